//! The real server as a separate process: `diskette serve` (or `demo`) on a
//! random loopback port, reached through a [`Web`] client, stopped by a
//! signal like an operator would.

use std::io::BufRead;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};

use super::web::Web;

/// A running server process. It leads its own process group, so whatever
/// it started (data commands) ends with it when a test stops half-way.
pub struct ServerProcess {
    child: Option<Child>,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    /// What it wrote to stderr up to the line saying where it listens.
    pub said: String,
    /// Everything it has written to stderr so far.
    log: Arc<Mutex<String>>,
}

impl ServerProcess {
    /// Start `diskette --config CONFIG serve` on a random loopback port,
    /// through `sh` so that `shell_prefix` can set limits first
    /// (`ulimit -f 1024;`); the shell `exec`s, so the process is the server.
    pub async fn serve(config: &Path, shell_prefix: &str) -> ServerProcess {
        let script = format!("{shell_prefix} exec \"$0\" --config \"$1\" serve --addr 127.0.0.1:0");
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(script)
            .arg(env!("CARGO_BIN_EXE_diskette"))
            .arg(config);
        ServerProcess::start(cmd).await
    }

    /// Start `cmd` and wait until it says `serving on http://ADDR`.
    pub async fn start(mut cmd: Command) -> ServerProcess {
        let mut child = cmd
            .process_group(0)
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the server");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let kept = log.clone();
        let found = tokio::task::spawn_blocking(move || {
            let mut said = String::new();
            // Bytes, not lines of text: what the server wrote, unaltered.
            let mut lines = std::io::BufReader::new(stderr).split(b'\n');
            for line in lines.by_ref() {
                let line = String::from_utf8_lossy(&line.unwrap()).into_owned();
                said.push_str(&line);
                said.push('\n');
                if let Some(rest) = line.split("serving on http://").nth(1) {
                    let base = format!("http://{}", rest.trim());
                    kept.lock().unwrap().push_str(&said);
                    // Keep draining so the server never writes into a full pipe.
                    std::thread::spawn(move || {
                        for line in lines.map_while(Result::ok) {
                            let mut log = kept.lock().unwrap();
                            log.push_str(&String::from_utf8_lossy(&line));
                            log.push('\n');
                        }
                    });
                    return Some((base, said));
                }
            }
            None
        })
        .await
        .unwrap();
        let Some((base, said)) = found else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the server never said where it listens");
        };
        ServerProcess {
            child: Some(child),
            base,
            said,
            log,
        }
    }

    /// Everything the server has written to stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// A logged-out browser-like client of this server.
    pub fn web(&self) -> Web {
        Web::new(&self.base)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Send `signal` (`TERM`, `KILL`) to the server and wait for its end.
    pub async fn signal(mut self, signal: &str) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let sent = Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success(), "kill -{signal}");
        tokio::task::spawn_blocking(move || {
            let status = child.wait().unwrap();
            end_group(child.id());
            status
        })
        .await
        .unwrap()
    }
}

/// End what is left of a server's process group (children of a dead server).
fn end_group(pid: u32) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pid}")])
        .stderr(Stdio::null())
        .status();
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
            end_group(child.id());
        }
    }
}
