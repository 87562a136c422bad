//! The agent side: bind the socket safely and serve requests.

use crate::protocol::{ControlError, Reply, Request, MAX_LINE};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Answers requests. Implemented by the daemon.
pub trait Handler: Send + Sync + 'static {
    /// Handles one well-formed request.
    fn handle(&self, req: Request) -> Reply;
}

/// Binds the control socket: refuses if an agent already answers there, removes a stale socket,
/// creates the socket with mode 0600 (umask held at 0177 while binding, so there is no window
/// in which it is more open).
pub fn bind(path: &Path) -> Result<UnixListener, ControlError> {
    let io = |op| {
        let path = path.to_owned();
        move |source| ControlError::Io { path, op, source }
    };
    if let Some(dir) = path.parent() {
        if !dir.exists() {
            std::fs::create_dir_all(dir).map_err(io("create directory for"))?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
                .map_err(io("set permissions on directory of"))?;
        }
    }
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            return Err(ControlError::AlreadyRunning {
                path: path.to_owned(),
            });
        }
        std::fs::remove_file(path).map_err(io("remove stale"))?;
    }
    // SAFETY: umask is process-wide; called before the agent starts its threads.
    let old = unsafe { libc::umask(0o177) };
    let l = UnixListener::bind(path);
    // SAFETY: restores the previous mask.
    unsafe { libc::umask(old) };
    let l = l.map_err(io("bind"))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io("chmod"))?;
    Ok(l)
}

/// Serves connections on their own threads until the process exits.
pub fn serve(listener: UnixListener, handler: Arc<dyn Handler>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("custos-control".into())
        .spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let h = handler.clone();
                let _ = std::thread::Builder::new()
                    .name("custos-control-conn".into())
                    .spawn(move || connection(conn, h.as_ref()));
            }
        })?;
    Ok(())
}

fn peer_is_root(s: &UnixStream) -> bool {
    use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
    getsockopt(s, PeerCredentials).is_ok_and(|c| c.uid() == 0)
}

fn send(s: &mut UnixStream, r: &Reply) -> std::io::Result<()> {
    let mut line = serde_json::to_string(r).unwrap_or_else(|_| r#"{"ok":false}"#.into());
    line.push('\n');
    s.write_all(line.as_bytes())
}

fn connection(mut s: UnixStream, handler: &dyn Handler) {
    let _ = s.set_read_timeout(Some(Duration::from_secs(60)));
    let _ = s.set_write_timeout(Some(Duration::from_secs(10)));
    if !peer_is_root(&s) {
        let _ = send(
            &mut s,
            &Reply::err("permission denied: the control socket is root-only"),
        );
        return;
    }
    let Ok(read_half) = s.try_clone() else { return };
    let mut reader = BufReader::new(read_half.take(u64::MAX));
    loop {
        let mut line = Vec::new();
        reader.get_mut().set_limit(MAX_LINE as u64 + 1);
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if line.len() > MAX_LINE {
            let _ = send(
                &mut s,
                &Reply::err(format!("request longer than {MAX_LINE} bytes")),
            );
            return;
        }
        let reply = match serde_json::from_slice::<Request>(&line) {
            Ok(req) => handler.handle(req),
            Err(e) => Reply::err(format!("malformed request: {e}")),
        };
        if send(&mut s, &reply).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Client;

    struct Echo;
    impl Handler for Echo {
        fn handle(&self, req: Request) -> Reply {
            match req {
                Request::RuleRemove { id: 0 } => Reply::err("no rule with id 0"),
                r => Reply::ok(format!("{r:?}")),
            }
        }
    }

    #[test]
    fn roundtrip_and_malformed() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: the server only answers root peers");
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("run/c.sock");
        let l = bind(&p).expect("bind");
        let mode = std::fs::metadata(&p).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(matches!(bind(&p), Err(ControlError::AlreadyRunning { .. })));
        serve(l, Arc::new(Echo)).expect("serve");
        let mut c = Client::connect(&p).expect("connect");
        assert_eq!(c.call(&Request::Status {}).expect("status"), "Status");
        let e = c.raw("{not json\n").unwrap_err().to_string();
        assert!(e.contains("malformed request"), "{e}");
        let e = c
            .call(&Request::RuleRemove { id: 0 })
            .unwrap_err()
            .to_string();
        assert_eq!(e, "no rule with id 0");
        // The connection still works after errors.
        assert_eq!(c.call(&Request::RuleList {}).expect("list"), "RuleList");
    }

    #[test]
    fn not_running_is_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("none.sock");
        assert!(matches!(
            Client::connect(&p),
            Err(ControlError::NotRunning { .. })
        ));
        // A stale socket file with no listener: also "not running", and bind replaces it.
        drop(std::os::unix::net::UnixListener::bind(&p).expect("bind"));
        assert!(matches!(
            Client::connect(&p),
            Err(ControlError::NotRunning { .. })
        ));
        assert!(bind(&p).is_ok());
    }
}
