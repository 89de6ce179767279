//! A real mosquitto broker for the MQTT tests, on a free loopback port with
//! persistence in the test's directory, and its command-line clients.
//! `scripts/test` installs mosquitto; a missing binary fails the test.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{free_port, wait_for, Proc};

/// A `mosquitto -c <conf>` process.
pub struct Mosquitto {
    pub proc: Proc,
    pub port: u16,
    pub dir: PathBuf,
}

/// Path of a mosquitto program; panics with the install hint when missing.
pub fn tool(cmd: &str) -> PathBuf {
    for dir in ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"] {
        let p = Path::new(dir).join(cmd);
        if p.exists() {
            return p;
        }
    }
    panic!(
        "{cmd} not found: scripts/test installs it (apt-get install mosquitto mosquitto-clients)"
    );
}

impl Mosquitto {
    /// Starts a broker on a free port; `extra` lines are added to its config.
    pub fn start(dir: &Path, extra: &str) -> Mosquitto {
        Self::start_on(dir, free_port().port(), extra)
    }

    /// Starts a broker on `port` (again after a stop, same persistence).
    pub fn start_on(dir: &Path, port: u16, extra: &str) -> Mosquitto {
        std::fs::create_dir_all(dir).expect("broker dir");
        let conf = dir.join("mosquitto.conf");
        // Running as root, mosquitto would switch to its own user and could
        // not write the test's directory.
        let text = format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\nuser root\n\
             persistence true\npersistence_location {}/\n\
             max_queued_messages 0\nlog_type error\nlog_type warning\nlog_type notice\n{extra}\n",
            dir.display()
        );
        std::fs::write(&conf, text).expect("broker config");
        let mut last = String::new();
        // The port of a stopped broker can take a moment to be free again.
        for _ in 0..50 {
            let log = dir.join("mosquitto.log");
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)
                .expect("broker log");
            let child = Command::new(tool("mosquitto"))
                .arg("-c")
                .arg(&conf)
                .stdout(Stdio::null())
                .stderr(f)
                .spawn()
                .expect("spawn mosquitto");
            let mut proc = Proc { child, log };
            let up = wait_for(Duration::from_secs(5), || {
                if let Ok(Some(_)) = proc.child.try_wait() {
                    return Some(false);
                }
                std::net::TcpStream::connect(("127.0.0.1", port))
                    .ok()
                    .map(|_| true)
            });
            if up == Some(true) {
                return Mosquitto {
                    proc,
                    port,
                    dir: dir.to_path_buf(),
                };
            }
            last = proc.log_text();
            proc.kill9();
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("mosquitto did not start: {last}");
    }

    /// `mqtt://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// SIGTERM: mosquitto saves its sessions and queued messages, then exits.
    pub fn stop(&mut self) {
        let status = self.proc.terminate(Duration::from_secs(10));
        assert!(status.is_some(), "mosquitto did not stop on SIGTERM");
    }

    /// Starts again on the same port, config and persistence.
    pub fn restart(&mut self, extra: &str) {
        let again = Mosquitto::start_on(&self.dir, self.port, extra);
        *self = again;
    }
}

/// A `mosquitto_pub -l` process: every line written to it is one message.
pub struct Publisher {
    child: Child,
    stdin: Option<std::process::ChildStdin>,
}

impl Publisher {
    /// Publishes lines to `topic` at `qos` (optionally retained).
    pub fn start(port: u16, topic: &str, qos: u8, retain: bool) -> Publisher {
        let mut cmd = Command::new(tool("mosquitto_pub"));
        cmd.args(["-h", "127.0.0.1", "-p", &port.to_string(), "-t", topic])
            .args(["-q", &qos.to_string(), "-l"]);
        if retain {
            cmd.arg("-r");
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn mosquitto_pub");
        let stdin = child.stdin.take();
        Publisher { child, stdin }
    }

    /// Publishes one message per line.
    pub fn send(&mut self, lines: &[String]) {
        let mut buf = String::new();
        for l in lines {
            buf.push_str(l);
            buf.push('\n');
        }
        self.stdin
            .as_mut()
            .expect("publisher open")
            .write_all(buf.as_bytes())
            .expect("write to mosquitto_pub");
    }

    /// Closes stdin and waits (bounded) until every message is published.
    pub fn finish(mut self) {
        drop(self.stdin.take());
        let done = wait_for(Duration::from_secs(30), || {
            self.child.try_wait().ok().flatten()
        });
        assert!(
            done.is_some_and(|s| s.success()),
            "mosquitto_pub did not finish cleanly: {done:?}"
        );
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Publishes one message with `mosquitto_pub -m` (or `-f file` for large payloads).
pub fn publish_one(port: u16, topic: &str, qos: u8, retain: bool, payload: &[u8]) {
    let file = tempfile::NamedTempFile::new().expect("payload file");
    std::fs::write(file.path(), payload).expect("write payload");
    let mut cmd = Command::new(tool("mosquitto_pub"));
    cmd.args(["-h", "127.0.0.1", "-p", &port.to_string(), "-t", topic])
        .args(["-q", &qos.to_string(), "-f"])
        .arg(file.path());
    if retain {
        cmd.arg("-r");
    }
    let status = cmd
        .stderr(Stdio::null())
        .status()
        .expect("run mosquitto_pub");
    assert!(status.success(), "mosquitto_pub failed for {topic}");
}

/// A `mosquitto_sub -v` process collecting `topic payload` lines into a file.
pub struct Subscriber {
    child: Child,
    pub out: PathBuf,
}

impl Subscriber {
    /// Subscribes to `filter` at `qos` until killed.
    pub fn start(port: u16, filter: &str, qos: u8, out: &Path) -> Subscriber {
        let f = std::fs::File::create(out).expect("subscriber output");
        let child = Command::new(tool("mosquitto_sub"))
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-t", filter])
            .args(["-q", &qos.to_string(), "-v"])
            .stdout(f)
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn mosquitto_sub");
        Subscriber {
            child,
            out: out.to_path_buf(),
        }
    }

    /// Lines received so far.
    pub fn lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
