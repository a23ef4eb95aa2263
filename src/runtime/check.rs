//! `portcullis check`: load a configuration directory once, compile it, and
//! print every condition in an aligned table, with load problems and ignored
//! documents. The formatting is pure ([`format_report`]); the verdict is
//! [`Checked::is_healthy`].

use super::report::ProblemReport;
use crate::compile::{compile, CompileOptions};
use crate::model::load::{self, DirLoader};
use crate::status::{Condition, ObjectStatus, ParentRefStatus, Status};
use serde::Serialize;
use std::fmt::Write;
use std::path::Path;

/// The outcome of checking a directory.
#[derive(Debug, Clone)]
pub struct Checked {
    /// Status of every object.
    pub status: Status,
    /// Files that failed to load.
    pub problems: Vec<ProblemReport>,
    /// Documents of kinds portcullis does not read.
    pub ignored: Vec<String>,
}

impl Checked {
    /// Whether every object is healthy (`ObjectStatus::is_healthy`) and
    /// every file loaded.
    pub fn is_healthy(&self) -> bool {
        self.problems.is_empty() && self.status.objects.iter().all(ObjectStatus::is_healthy)
    }
}

/// Loads and compiles `dir` once.
pub fn check(dir: &Path, options: &CompileOptions) -> Result<Checked, load::Error> {
    let loaded = DirLoader::new().load(dir)?;
    // Listeners the issuer fills count as resolved: `check` reports the
    // configuration as `serve` runs it once certificates are issued.
    let filled = crate::issuer::augment::placeholders(&loaded.resources);
    let compiled = compile(&crate::issuer::augment(&loaded.resources, &filled), options);
    Ok(Checked {
        status: compiled.status,
        problems: loaded.problems.iter().map(ProblemReport::from).collect(),
        ignored: loaded.ignored,
    })
}

const HEADER: [&str; 7] = [
    "KIND", "NAME", "SCOPE", "TYPE", "STATUS", "REASON", "MESSAGE",
];

/// The text `portcullis check` prints: one row per condition (object,
/// listener or parent scope) with aligned columns, then load problems and
/// ignored documents.
pub fn format_report(checked: &Checked) -> String {
    let mut rows: Vec<[String; 7]> = vec![HEADER.map(str::to_string)];
    for object in &checked.status.objects {
        let name = if object.namespace.is_empty() {
            object.name.clone()
        } else {
            format!("{}/{}", object.namespace, object.name)
        };
        let mut push = |scope: String, c: Option<&Condition>| {
            let cells = match c {
                Some(c) => [
                    variant_name(&c.kind),
                    variant_name(&c.status),
                    variant_name(&c.reason),
                    single_line(&c.message),
                ],
                None => ["-", "-", "-", "no conditions"].map(str::to_string),
            };
            let [t, s, r, m] = cells;
            rows.push([object.kind.clone(), name.clone(), scope, t, s, r, m]);
        };
        if object.conditions.is_empty() && object.listeners.is_empty() && object.parents.is_empty()
        {
            push("-".into(), None);
        }
        for c in &object.conditions {
            push("-".into(), Some(c));
        }
        for l in &object.listeners {
            for c in &l.conditions {
                push(format!("listener:{}", l.name), Some(c));
            }
        }
        for p in &object.parents {
            for c in &p.conditions {
                push(parent_scope(&p.parent_ref), Some(c));
            }
        }
    }
    let mut out = align(&rows);
    if !checked.problems.is_empty() {
        out.push_str("\nPROBLEMS\n");
        for p in &checked.problems {
            let kept = if p.kept_previous {
                " (previous content kept)"
            } else {
                ""
            };
            let place = p
                .file
                .as_deref()
                .or(p.object.as_deref())
                .unwrap_or_default();
            let _ = writeln!(out, "  {place}: {}{kept}", single_line(&p.message));
        }
    }
    if !checked.ignored.is_empty() {
        out.push_str("\nIGNORED\n");
        for i in &checked.ignored {
            let _ = writeln!(out, "  {i}");
        }
    }
    out
}

/// Pads every column but the last to its widest cell.
fn align(rows: &[[String; 7]]) -> String {
    let mut widths = [0usize; 7];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<width$}  ", width = widths[i]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `parent:namespace/name[/section][:port]`, with the kind when it is not a
/// Gateway.
fn parent_scope(p: &ParentRefStatus) -> String {
    let mut s = String::from("parent:");
    if p.kind != "Gateway" {
        let _ = write!(s, "{}:", p.kind);
    }
    let _ = write!(s, "{}/{}", p.namespace, p.name);
    if let Some(section) = &p.section_name {
        let _ = write!(s, "/{section}");
    }
    if let Some(port) = p.port {
        let _ = write!(s, ":{port}");
    }
    s
}

/// The serialised name of a unit enum variant (condition types, statuses and
/// reasons serialise as their Gateway API spelling).
fn variant_name<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        _ => "?".to_string(),
    }
}

fn single_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::{ConditionType, ListenerStatus, ParentStatus, Reason};

    fn sample() -> Checked {
        let mut gw = ObjectStatus::new("Gateway", "default", "gw");
        gw.conditions.push(Condition::new(
            ConditionType::Accepted,
            true,
            Reason::Accepted,
            "accepted",
            1,
        ));
        gw.listeners.push(ListenerStatus {
            name: "https".into(),
            attached_routes: 1,
            supported_kinds: vec!["HTTPRoute".into()],
            conditions: vec![Condition::new(
                ConditionType::ResolvedRefs,
                false,
                Reason::InvalidCertificateRef,
                "secret default/missing\nnot found",
                1,
            )],
            certificate_refs: Vec::new(),
        });
        let mut route = ObjectStatus::new("HTTPRoute", "apps", "web");
        route.parents.push(ParentStatus {
            parent_ref: ParentRefStatus {
                group: "gateway.networking.k8s.io".into(),
                kind: "Gateway".into(),
                namespace: "default".into(),
                name: "gw".into(),
                section_name: Some("https".into()),
                port: None,
            },
            controller_name: "portcullis.dev/gateway-controller".into(),
            conditions: vec![Condition::new(
                ConditionType::Accepted,
                true,
                Reason::Accepted,
                "",
                2,
            )],
        });
        Checked {
            status: Status {
                objects: vec![gw, route, ObjectStatus::new("GatewayClass", "", "c")],
            },
            problems: vec![ProblemReport {
                file: Some("bad.yaml".into()),
                object: None,
                message: "document 1: malformed YAML".into(),
                kept_previous: false,
            }],
            ignored: vec!["d.yaml: apps/v1 Deployment d".into()],
        }
    }

    #[test]
    fn table_has_one_aligned_row_per_condition() {
        let text = format_report(&sample());
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("KIND"));
        let col = lines[0].find("SCOPE").expect("header has SCOPE");
        for line in &lines[1..5] {
            assert_eq!(line.get(col - 2..col), Some("  "), "{line}");
        }
        assert!(lines[1].contains("default/gw") && lines[1].contains("Accepted"));
        assert!(lines[2].contains("listener:https"));
        assert!(lines[2].contains("False") && lines[2].contains("InvalidCertificateRef"));
        assert!(lines[2].ends_with("secret default/missing not found"));
        assert!(lines[3].contains("parent:default/gw/https"));
        assert!(lines[4].starts_with("GatewayClass") && lines[4].contains(" c "));
    }

    #[test]
    fn problems_and_ignored_documents_follow_the_table() {
        let text = format_report(&sample());
        assert!(text.contains("PROBLEMS\n  bad.yaml: document 1: malformed YAML\n"));
        assert!(text.contains("IGNORED\n  d.yaml: apps/v1 Deployment d\n"));
    }

    #[test]
    fn unhealthy_condition_or_load_problem_fails_the_check() {
        let mut checked = sample();
        assert!(!checked.is_healthy());
        checked.problems.clear();
        assert!(!checked.is_healthy(), "listener ResolvedRefs is False");
        checked.status.objects.remove(0);
        assert!(checked.is_healthy());
    }
}
