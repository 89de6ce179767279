//! The client side of the admin socket, for `weir reload`, `weir tap` and
//! `weir top`: plain blocking I/O, one request per connection.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use super::{AdminConfig, Request};

/// Why talking to the agent failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the agent's admin socket {path}: {source} (is the agent running, with this data directory or --socket?)")]
    Connect {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("admin socket {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("admin socket {path}: the agent's answer is not understood: {line}")]
    Answer { path: PathBuf, line: String },
    /// The agent answered with an error.
    #[error("{0}")]
    Refused(String),
}

/// Finds the admin socket: `--socket`, else the pipeline's `admin.socket`
/// or `<data_dir>/admin.sock` (read leniently: a pipeline that is invalid
/// as a whole still names its socket), else `data_dir`'s.
pub fn socket_for(
    socket: Option<&Path>,
    config: Option<&Path>,
    data_dir: Option<&Path>,
) -> PathBuf {
    if let Some(s) = socket {
        return s.to_path_buf();
    }
    let doc: Option<serde_yaml::Value> = config
        .and_then(|c| std::fs::read_to_string(c).ok())
        .and_then(|t| serde_yaml::from_str(&t).ok());
    let from_doc = |key: &str| -> Option<PathBuf> {
        let v = doc.as_ref()?;
        let v = key.split('.').try_fold(v, |v, k| v.get(k))?;
        v.as_str().map(PathBuf::from)
    };
    let dir = data_dir
        .map(Path::to_path_buf)
        .or_else(|| from_doc("data_dir"))
        .unwrap_or_else(|| PathBuf::from(crate::runtime::DEFAULT_DATA_DIR));
    if let Some(s) = from_doc("admin.socket") {
        return s;
    }
    AdminConfig::default().socket_path(&dir)
}

/// A connection after its request: the header, then further lines.
pub struct Answer {
    pub header: Value,
    pub lines: BufReader<UnixStream>,
    path: PathBuf,
}

impl Answer {
    /// The next line, parsed; `None` at the end.
    pub fn next_line(&mut self) -> Result<Option<Value>, ClientError> {
        let mut line = String::new();
        let n = self
            .lines
            .read_line(&mut line)
            .map_err(|source| ClientError::Io {
                path: self.path.clone(),
                source,
            })?;
        if n == 0 {
            return Ok(None);
        }
        serde_json::from_str(line.trim())
            .map(Some)
            .map_err(|_| ClientError::Answer {
                path: self.path.clone(),
                line: line.trim().to_owned(),
            })
    }
}

/// Sends `req` and reads the header line; an `ok: false` header is an error.
/// `read_timeout` bounds each read (`None`: wait as long as it takes).
pub fn request(
    path: &Path,
    req: &Request,
    read_timeout: Option<Duration>,
) -> Result<Answer, ClientError> {
    let io = |source| ClientError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut conn = UnixStream::connect(path).map_err(|source| ClientError::Connect {
        path: path.to_path_buf(),
        source,
    })?;
    conn.set_read_timeout(read_timeout).map_err(io)?;
    conn.set_write_timeout(Some(Duration::from_secs(5)))
        .map_err(io)?;
    let mut line = serde_json::to_vec(req).unwrap_or_default();
    line.push(b'\n');
    conn.write_all(&line).map_err(io)?;
    let mut answer = Answer {
        header: Value::Null,
        lines: BufReader::new(conn),
        path: path.to_path_buf(),
    };
    let header = answer.next_line()?.ok_or_else(|| ClientError::Answer {
        path: path.to_path_buf(),
        line: "(nothing)".to_owned(),
    })?;
    if header["ok"] != Value::Bool(true) {
        let msg = header["error"].as_str().unwrap_or("refused").to_owned();
        return Err(ClientError::Refused(msg));
    }
    answer.header = header;
    Ok(answer)
}

/// Asks the agent to reload; the changes it applied.
pub fn reload(path: &Path) -> Result<String, ClientError> {
    let a = request(path, &Request::Reload, None)?;
    Ok(a.header["changes"].as_str().unwrap_or_default().to_owned())
}

/// The agent's metrics, in the Prometheus text format.
pub fn metrics(path: &Path) -> Result<String, ClientError> {
    let a = request(path, &Request::Metrics, Some(Duration::from_secs(10)))?;
    Ok(a.header["metrics"].as_str().unwrap_or_default().to_owned())
}

/// Taps `target` (`component[.output]`): events go to `on_event`, status
/// lines (drops, the end) to `on_status`, until the limit or the end.
pub fn tap(
    path: &Path,
    target: &str,
    rate: u32,
    limit: Option<u64>,
    mut on_event: impl FnMut(&Value),
    mut on_status: impl FnMut(&Value),
) -> Result<(), ClientError> {
    let (component, output) = crate::config::split_input(target);
    let req = Request::Tap {
        component: component.to_owned(),
        output: output.filter(|o| *o != "default").map(str::to_owned),
        rate,
        limit,
    };
    let mut a = request(path, &req, None)?;
    while let Some(line) = a.next_line()? {
        if line.get("tap").is_some() {
            on_status(&line);
            if line["tap"] == "end" {
                break;
            }
        } else {
            on_event(&line);
        }
    }
    Ok(())
}
