//! The control plane's child processes (etcd, kube-apiserver, the controllers,
//! the node agent): spawned so that they cannot outlive the test process,
//! output to a log file whose tail goes into error messages, killed and
//! reaped when their guard drops.
//!
//! Dropping the guard covers a test that ends or panics. A test process that is
//! killed runs no destructor, so every child also gets `PR_SET_PDEATHSIG`
//! (SIGKILL). Linux sends that signal when the *thread* that forked the child
//! exits, not the process, and test threads end while others run on; so every
//! child is forked by one spawner thread that lives as long as the process.

use anyhow::{anyhow, Context, Result};
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A running child process; SIGKILLed and reaped on drop.
pub(super) struct Process {
    name: &'static str,
    child: Child,
    log: PathBuf,
    /// Where this run's output starts in `log` (earlier runs precede it).
    log_start: u64,
}

impl Process {
    /// Starts `program args...` with stdout and stderr appended to `log` (after
    /// a line saying what starts, so restarts read apart in one file).
    pub(super) fn spawn(
        name: &'static str,
        program: &Path,
        args: &[String],
        log: &Path,
    ) -> Result<Process> {
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("open {}", log.display()))?;
        let log_start = file.metadata()?.len();
        writeln!(file, "==> {} {}", program.display(), args.join(" "))?;
        let mut command = Command::new(program);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file);
        let child = spawn_tethered(command)
            .with_context(|| format!("spawn {name} ({})", program.display()))?;
        Ok(Process {
            name,
            child,
            log: log.to_path_buf(),
            log_start,
        })
    }

    /// The process id.
    pub(super) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status, if the process has exited.
    pub(super) fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Fails with the log tail when the process has exited.
    pub(super) fn check_running(&mut self) -> Result<()> {
        match self.exited() {
            None => Ok(()),
            Some(status) => Err(anyhow!(
                "{} exited ({status}); last lines of {}:\n{}",
                self.name,
                self.log.display(),
                self.log_tail(30)
            )),
        }
    }

    /// Whether this run's log says the process could not bind its address
    /// (the port picked for it was taken meanwhile).
    pub(super) fn failed_to_bind(&self) -> bool {
        std::fs::read(&self.log)
            .map(|bytes| {
                let start = (self.log_start as usize).min(bytes.len());
                String::from_utf8_lossy(&bytes[start..]).contains("address already in use")
            })
            .unwrap_or(false)
    }

    /// The last `lines` lines of the log.
    pub(super) fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log, lines)
    }

    /// Asks the process to stop (SIGTERM) and waits up to `grace` for it to
    /// exit; the drop that follows kills what is left. For a process that
    /// undoes something outside itself on exit (the node agent's network).
    pub(super) fn terminate(&mut self, grace: Duration) {
        if self.exited().is_some() {
            return;
        }
        let pid = rustix::process::Pid::from_child(&self.child);
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if self.exited().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The last `lines` lines of a file (empty when unreadable).
pub(super) fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

type SpawnRequest = (Command, mpsc::SyncSender<std::io::Result<Child>>);

/// Spawns `command` from the process-lifetime spawner thread, with SIGKILL as
/// its parent-death signal.
fn spawn_tethered(command: Command) -> std::io::Result<Child> {
    static SPAWNER: OnceLock<mpsc::Sender<SpawnRequest>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (requests, incoming) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("control-plane-spawner".into())
            .spawn(move || {
                // The sender lives in a static, so this loop (and with it the
                // thread every child's death signal is tied to) never ends
                // before the process does.
                for (command, reply) in incoming {
                    let _ = reply.send(spawn_with_death_signal(command));
                }
            })
            .expect("a thread can be started at test start-up");
        requests
    });
    let (reply, answer) = mpsc::sync_channel(1);
    spawner
        .send((command, reply))
        .map_err(|_| std::io::Error::other("the spawner thread has ended"))?;
    answer
        .recv()
        .map_err(|_| std::io::Error::other("the spawner thread dropped a request"))?
}

/// Runs on the spawner thread.
fn spawn_with_death_signal(mut command: Command) -> std::io::Result<Child> {
    let parent = rustix::process::getpid();
    // SAFETY: the closure runs in the forked child before exec and only makes
    // two system calls (prctl, getppid), both async-signal-safe; it allocates
    // nothing (errors are raw OS errors).
    unsafe {
        command.pre_exec(move || {
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
                .map_err(std::io::Error::from)?;
            // The parent may have died between fork and prctl; then the signal
            // was never armed and the child was already handed to a reaper.
            if rustix::process::getppid() != Some(parent) {
                return Err(std::io::Error::from(rustix::io::Errno::SRCH));
            }
            Ok(())
        });
    }
    command.spawn()
}
