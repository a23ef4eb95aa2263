//! Process limits `serve` adjusts at start.

/// Raises the soft limit on open files to the hard one, as HAProxy and the
/// Go runtime do: each connection holds a socket, a forwarded one a second
/// socket and, when spliced, two pipes (four descriptors), and the common
/// soft default of 1,024 would cap a gateway far below its
/// `--max-connections`. Returns the soft limit before and after, or `None`
/// where nothing could be read or changed (non-Linux, no hard limit known).
#[cfg(target_os = "linux")]
pub fn raise_open_files() -> Option<(u64, u64)> {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Nofile);
    let before = limit.current?;
    // An unlimited hard limit is not a valid soft one for open files (the
    // kernel caps it at fs.nr_open); keep what there is then.
    let target = limit.maximum?;
    if target <= before {
        return Some((before, before));
    }
    match setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(target),
            maximum: Some(target),
        },
    ) {
        Ok(()) => Some((before, target)),
        Err(error) => {
            tracing::debug!(%error, "cannot raise the open-file limit");
            Some((before, before))
        }
    }
}

/// Elsewhere the limit is left as it is.
#[cfg(not(target_os = "linux"))]
pub fn raise_open_files() -> Option<(u64, u64)> {
    None
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

    #[test]
    fn the_soft_open_file_limit_is_raised_to_the_hard_one() {
        let Some(hard) = getrlimit(Resource::Nofile).maximum else {
            // No hard limit: nothing to raise to (the function says None).
            assert_eq!(raise_open_files(), None);
            return;
        };
        // One below the hard limit: enough to see the raise, too little to
        // starve the other tests of this process.
        let lowered = Rlimit {
            current: Some(hard - 1),
            maximum: Some(hard),
        };
        setrlimit(Resource::Nofile, lowered).expect("lower the soft limit");
        assert_eq!(raise_open_files(), Some((hard - 1, hard)));
        assert_eq!(getrlimit(Resource::Nofile).current, Some(hard));
        // Already at the top: unchanged.
        assert_eq!(raise_open_files(), Some((hard, hard)));
    }
}
