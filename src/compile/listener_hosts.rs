//! The listeners of one Gateway indexed by hostname, so attaching a route
//! with exact hostnames looks at the listeners those names can select
//! instead of every listener of the Gateway (10,000 routes on 10,000
//! listeners would otherwise be 10^8 hostname intersections per compile).

use std::collections::HashMap;

/// Listener indices (into `World::listeners`) by hostname pattern.
#[derive(Debug, Default)]
pub(crate) struct ListenerHosts {
    exact: HashMap<String, Vec<usize>>,
    /// By wildcard suffix: `*.example.com` is stored as `.example.com`.
    wildcard: HashMap<String, Vec<usize>>,
    any: Vec<usize>,
}

impl ListenerHosts {
    /// An index of `(listener index, hostname)` pairs.
    pub(crate) fn new<'a>(listeners: impl IntoIterator<Item = (usize, Option<&'a str>)>) -> Self {
        let mut index = ListenerHosts::default();
        for (i, host) in listeners {
            match host {
                None => index.any.push(i),
                Some(h) => match h.strip_prefix('*') {
                    Some(suffix) => index
                        .wildcard
                        .entry(suffix.to_string())
                        .or_default()
                        .push(i),
                    None => index.exact.entry(h.to_string()).or_default().push(i),
                },
            }
        }
        index
    }

    /// Every listener whose hostname intersects one of `route_hostnames`, in
    /// listener order, when every route hostname is exact; `None` when some
    /// is a wildcard or there are none (the caller then checks every
    /// listener).
    pub(crate) fn candidates(&self, route_hostnames: &[String]) -> Option<Vec<usize>> {
        if route_hostnames.is_empty()
            || route_hostnames
                .iter()
                .any(|h| crate::hostname::is_wildcard(h))
        {
            return None;
        }
        let mut out = self.any.clone();
        for h in route_hostnames {
            let h = h.to_ascii_lowercase();
            if let Some(v) = self.exact.get(&h) {
                out.extend(v);
            }
            for suffix in crate::hostname::wildcard_suffixes(&h) {
                if let Some(v) = self.wildcard.get(suffix) {
                    out.extend(v);
                }
            }
        }
        out.sort_unstable();
        out.dedup();
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index() -> ListenerHosts {
        ListenerHosts::new([
            (0, Some("a.example.com")),
            (1, Some("*.example.com")),
            (2, None),
            (3, Some("b.example.org")),
            (4, Some("*.com")),
        ])
    }

    #[test]
    fn exact_route_hostnames_select_every_listener_that_can_serve_them() {
        let hosts = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            index().candidates(&hosts(&["a.example.com"])),
            Some(vec![0, 1, 2, 4])
        );
        assert_eq!(
            index().candidates(&hosts(&["B.example.org"])),
            Some(vec![2, 3])
        );
        assert_eq!(
            index().candidates(&hosts(&["example.com"])),
            Some(vec![2, 4])
        );
    }

    #[test]
    fn wildcard_or_missing_route_hostnames_need_a_full_scan() {
        assert_eq!(index().candidates(&[]), None);
        assert_eq!(index().candidates(&["*.example.com".to_string()]), None);
    }

    /// The index never drops a listener the hostname rule would accept.
    #[test]
    fn candidates_agree_with_the_intersection_rule() {
        let listeners = [
            Some("a.example.com"),
            Some("*.example.com"),
            None,
            Some("b.example.org"),
            Some("*.com"),
            Some("*.a.example.com"),
        ];
        let idx = ListenerHosts::new(listeners.iter().copied().enumerate());
        for host in [
            "a.example.com",
            "x.a.example.com",
            "example.com",
            "q.org",
            "b.example.org",
        ] {
            let want: Vec<usize> = listeners
                .iter()
                .enumerate()
                .filter(|(_, l)| crate::hostname::intersect(**l, host).is_some())
                .map(|(i, _)| i)
                .collect();
            assert_eq!(idx.candidates(&[host.to_string()]), Some(want), "{host}");
        }
    }
}
