//! The real `portcullis serve` process under test: a config and a state
//! directory of its own, a random `--port-offset` so every listener lands on a
//! free loopback port, an admin address, and its log printed when a test fails.

use super::{eventually, WAIT};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

/// Path of the binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_portcullis");

/// A running gateway; killed when dropped.
pub struct Gateway {
    child: Option<Child>,
    config: PathBuf,
    _config_dir: Option<tempfile::TempDir>,
    _state: tempfile::TempDir,
    /// Scratch space for client-side files (CA bundles, payloads).
    pub work: tempfile::TempDir,
    log: PathBuf,
    /// Added to every listener port.
    pub offset: u16,
    /// Admin address.
    pub admin: SocketAddr,
}

/// Listener ports tests use; the offset is chosen so all of them are free.
const PORTS: [u16; 4] = [80, 443, 8080, 8443];

/// How many times [`Gateway`] starts portcullis when a port it was given was
/// taken before it bound it.
const ADDR_IN_USE_ATTEMPTS: u32 = 3;

impl Gateway {
    /// Writes `files` into a fresh config directory and starts serving it;
    /// returns once `/readyz` answers 200.
    pub async fn start(files: &[(&str, String)]) -> Gateway {
        let dir = tempfile::tempdir().expect("config tempdir");
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).expect("write manifest");
        }
        let path = dir.path().to_path_buf();
        Self::spawn(path, Some(dir), &[]).await
    }

    /// Like [`Gateway::start`], with extra `serve` arguments.
    pub async fn start_with_args(files: &[(&str, String)], args: &[&str]) -> Gateway {
        let dir = tempfile::tempdir().expect("config tempdir");
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).expect("write manifest");
        }
        let path = dir.path().to_path_buf();
        Self::spawn(path, Some(dir), args).await
    }

    /// Serves an existing directory (such as `examples/quickstart`).
    pub async fn start_dir(config: &Path) -> Gateway {
        Self::spawn(config.to_path_buf(), None, &[]).await
    }

    /// Starts `portcullis serve`; when a port it was given (admin or a
    /// listener's) was taken before it bound it, starts it again on new ones
    /// (see `ports`).
    async fn spawn(
        config: PathBuf,
        mut config_dir: Option<tempfile::TempDir>,
        args: &[&str],
    ) -> Gateway {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut gw = Self::spawn_once(config.clone(), config_dir.take(), args);
            match gw.ready().await {
                Ok(()) => return gw,
                Err(_)
                    if attempt < ADDR_IN_USE_ATTEMPTS
                        && super::ports::is_addr_in_use(&gw.log_text()) =>
                {
                    config_dir = gw._config_dir.take();
                }
                Err(e) => panic!("{e}"),
            }
        }
    }

    fn spawn_once(
        config: PathBuf,
        config_dir: Option<tempfile::TempDir>,
        args: &[&str],
    ) -> Gateway {
        let state = tempfile::tempdir().expect("state tempdir");
        let work = tempfile::tempdir().expect("work tempdir");
        let log = work.path().join("portcullis.log");
        let offset = free_offset();
        let admin = SocketAddr::from((
            [127, 0, 0, 1],
            super::ports::for_child().expect("a free admin port"),
        ));
        let log_file = std::fs::File::create(&log).expect("create log file");
        let child = Command::new(BIN)
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .arg("--state")
            .arg(state.path())
            .arg("--admin-addr")
            .arg(admin.to_string())
            .arg("--listen-address")
            .arg("127.0.0.1")
            .arg("--port-offset")
            .arg(offset.to_string())
            .args(args)
            .env("RUST_LOG", "portcullis=debug,info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("clone log handle"))
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .expect("spawn portcullis");
        Gateway {
            child: Some(child),
            config,
            _config_dir: config_dir,
            _state: state,
            work,
            log,
            offset,
            admin,
        }
    }

    /// Waits for `/readyz` to answer 200; panics (with the log) if the process
    /// exits or `WAIT` passes.
    pub async fn wait_ready(&mut self) {
        if let Err(e) = self.ready().await {
            panic!("{e}");
        }
    }

    /// Waits for `/readyz` to answer 200; the error carries the log when the
    /// process exits or `WAIT` passes.
    async fn ready(&mut self) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(format!(
                        "portcullis exited early with {status}\n{}",
                        self.log_text()
                    ));
                }
            }
            if let Ok((200, _)) = self.admin_get("/readyz").await {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                return Err(format!(
                    "portcullis not ready after {WAIT:?}\n{}",
                    self.log_text()
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The real port of listener port `port`.
    pub fn port(&self, port: u16) -> u16 {
        port + self.offset
    }

    /// `127.0.0.1:(port + offset)`.
    pub fn addr(&self, port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port(port)))
    }

    /// The config directory.
    pub fn config(&self) -> &Path {
        &self.config
    }

    /// Replaces a manifest atomically (write a hidden temp file, then rename),
    /// as editors and `kubectl`-like tools do.
    pub fn write(&self, name: &str, text: &str) {
        let tmp = self.config.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text).expect("write temp manifest");
        std::fs::rename(&tmp, self.config.join(name)).expect("rename manifest");
    }

    /// Writes a file in place, non-atomically (to simulate half-written files
    /// and editor leftovers).
    pub fn write_raw(&self, name: &str, text: &str) {
        std::fs::write(self.config.join(name), text).expect("write manifest");
    }

    /// Writes a scratch file and returns its path.
    pub fn scratch(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.work.path().join(name);
        std::fs::write(&p, bytes).expect("write scratch file");
        p
    }

    /// GET on the admin address: `(status, body)`.
    pub async fn admin_get(&self, path: &str) -> Result<(u16, String), String> {
        super::clients::http_get(self.admin, "127.0.0.1", path)
            .await
            .map(|(s, _, b)| (s, String::from_utf8_lossy(&b).to_string()))
    }

    /// `/status` as JSON.
    pub async fn status(&self) -> serde_json::Value {
        let (code, body) = self.admin_get("/status").await.expect("GET /status");
        assert_eq!(code, 200, "/status answered {code}: {body}");
        serde_json::from_str(&body).expect("/status is JSON")
    }

    /// Waits until `/status` satisfies `pred`; returns it.
    pub async fn wait_status(
        &self,
        what: &str,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let pred = &pred;
        let r = tokio::time::timeout(
            WAIT + Duration::from_secs(1),
            eventually(what, || async move {
                let s = self.status().await;
                pred(&s).then_some(s)
            }),
        )
        .await;
        match r {
            Ok(v) => v,
            Err(_) => panic!(
                "timed out waiting for status: {what}\n{}\n{}",
                self.status().await,
                self.log_text()
            ),
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .and_then(|c| c.id())
            .expect("the gateway process is running")
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// Sends SIGTERM and waits (bounded) for the exit status code.
    pub async fn terminate(&mut self) -> Option<i32> {
        let pid = self.pid();
        // The shell's builtin kill: no procps needed.
        let ok = std::process::Command::new("sh")
            .args(["-c", &format!("kill -TERM {pid}")])
            .status()
            .expect("run sh -c kill");
        assert!(ok.success(), "kill -TERM {pid} failed");
        self.wait_exit().await
    }

    /// Waits (bounded) for the process to exit; returns its exit code.
    pub async fn wait_exit(&mut self) -> Option<i32> {
        let child = self
            .child
            .as_mut()
            .expect("the gateway process was started");
        match tokio::time::timeout(WAIT, child.wait()).await {
            Ok(Ok(status)) => status.code(),
            _ => panic!(
                "portcullis did not exit within {WAIT:?}\n{}",
                self.log_text()
            ),
        }
    }

    /// The process's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- portcullis log ----\n{}", self.log_text());
        }
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
    }
}

/// Runs `portcullis check --config DIR`: `(exit code, stdout + stderr)`.
pub async fn check(config: &Path) -> (i32, String) {
    let out = tokio::time::timeout(
        WAIT,
        Command::new(BIN)
            .arg("check")
            .arg("--config")
            .arg(config)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("portcullis check finished in time")
    .expect("run portcullis check");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// A port offset in 10000..31000, below Linux's ephemeral range (so backends
/// on port 0 never take a listener's port), whose test ports are all free.
fn free_offset() -> u16 {
    for _ in 0..200 {
        let offset: u16 = rand::random_range(10_000..31_000);
        let free = PORTS
            .iter()
            .all(|p| std::net::TcpListener::bind(("127.0.0.1", p + offset)).is_ok());
        if free {
            return offset;
        }
    }
    panic!("no free port offset found");
}

/// Finds, anywhere in `json`, an object whose `kind` and `name` match.
pub fn find_object<'a>(
    json: &'a serde_json::Value,
    kind: &str,
    name: &str,
) -> Option<&'a serde_json::Value> {
    match json {
        serde_json::Value::Object(map) => {
            if map.get("kind").and_then(|k| k.as_str()) == Some(kind)
                && map.get("name").and_then(|k| k.as_str()) == Some(name)
            {
                return Some(json);
            }
            map.values().find_map(|v| find_object(v, kind, name))
        }
        serde_json::Value::Array(items) => items.iter().find_map(|v| find_object(v, kind, name)),
        _ => None,
    }
}

/// Every condition `(type, status, reason)` under `json` (its own, its
/// listeners', its parents').
pub fn conditions(json: &serde_json::Value) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    collect_conditions(json, &mut out);
    out
}

fn collect_conditions(json: &serde_json::Value, out: &mut Vec<(String, String, String)>) {
    match json {
        serde_json::Value::Object(map) => {
            if let Some(serde_json::Value::Array(cs)) = map.get("conditions") {
                for c in cs {
                    let f = |k: &str| c.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
                    out.push((f("type"), f("status"), f("reason")));
                }
            }
            for (k, v) in map {
                if k != "conditions" {
                    collect_conditions(v, out);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_conditions(v, out)),
        _ => {}
    }
}

/// The listener named `listener` of Gateway `gateway` in a status document.
pub fn listener<'a>(
    status: &'a serde_json::Value,
    gateway: &str,
    listener: &str,
) -> Option<&'a serde_json::Value> {
    find_object(status, "Gateway", gateway)?
        .get("listeners")?
        .as_array()?
        .iter()
        .find(|l| l.get("name").and_then(|n| n.as_str()) == Some(listener))
}

/// Whether `json` carries condition `kind` with `status` (and `reason`, if
/// given).
pub fn has_condition(
    json: &serde_json::Value,
    kind: &str,
    status: &str,
    reason: Option<&str>,
) -> bool {
    conditions(json)
        .iter()
        .any(|(t, s, r)| t == kind && s == status && reason.is_none_or(|want| r == want))
}
