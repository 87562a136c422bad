//! A tiny HTTP/1.1 server for the tests: 127.0.0.1, canned replies per path, requests
//! counted per path. Unrouted paths get a 500.

use super::{Client, Config};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// What the test server does for a path.
#[derive(Clone)]
pub enum Reply {
    /// This status and JSON body, with Content-Length.
    Json(u16, String),
    /// These bytes as they are, then close.
    Raw(Vec<u8>),
    /// Read the request and never answer (the connection is held for 5 s).
    Hang,
    /// These bytes, then nothing more (the connection is held for 5 s).
    Stall(Vec<u8>),
}

/// A tiny HTTP/1.1 server on 127.0.0.1: canned replies per path, requests counted per path.
/// Unrouted paths get a 500.
pub struct Server {
    pub addr: SocketAddr,
    routes: Arc<Mutex<HashMap<String, Reply>>>,
    hits: Arc<Mutex<HashMap<String, usize>>>,
}

impl Server {
    pub fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let routes: Arc<Mutex<HashMap<String, Reply>>> = Arc::default();
        let hits: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let (r, h) = (routes.clone(), hits.clone());
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (r, h) = (r.clone(), h.clone());
                thread::spawn(move || serve(stream, &r, &h));
            }
        });
        Server { addr, routes, hits }
    }

    pub fn route(&self, path: &str, reply: Reply) {
        self.routes.lock().unwrap().insert(path.to_owned(), reply);
    }

    pub fn hits(&self, path: &str) -> usize {
        self.hits.lock().unwrap().get(path).copied().unwrap_or(0)
    }

    pub fn total(&self) -> usize {
        self.hits.lock().unwrap().values().sum()
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }
}

fn serve(
    mut stream: TcpStream,
    routes: &Mutex<HashMap<String, Reply>>,
    hits: &Mutex<HashMap<String, usize>>,
) {
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head);
    let path = head.split(' ').nth(1).unwrap_or("").to_owned();
    *hits.lock().unwrap().entry(path.clone()).or_default() += 1;
    let reply = routes.lock().unwrap().get(&path).cloned();
    let bytes = match reply {
        Some(Reply::Json(status, body)) => response(status, &body),
        Some(Reply::Raw(bytes)) => bytes,
        Some(Reply::Hang) => {
            thread::sleep(Duration::from_secs(5));
            return;
        }
        Some(Reply::Stall(bytes)) => {
            let _ = stream.write_all(&bytes);
            thread::sleep(Duration::from_secs(5));
            return;
        }
        None => response(500, r#"{"message": "no route"}"#),
    };
    let _ = stream.write_all(&bytes);
}

pub fn response(status: u16, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status} Canned\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// A digest of 32 times byte `b`, in hex.
pub fn h(b: u8) -> String {
    format!("{b:02x}").repeat(32)
}

pub fn path(hex: &str) -> String {
    format!("/lookup/sha256/{hex}")
}

/// Shaped as the service's SHA-256 records are (see the module docs).
pub fn known_record(hex: &str, trust: u8) -> String {
    format!(
        r#"{{"FileName": "./usr/bin/zsh", "FileSize": "878288", "SHA-256": "{}",
            "db": "nsrl_modern", "source": "RDS_2024.12.1_modern.db",
            "ProductCode": {{"ProductName": "zsh", "ProductVersion": "5.9"}},
            "hashlookup:parent-total": 1, "parents": [{{"FileName": "zsh.deb"}}],
            "hashlookup:trust": {trust}}}"#,
        hex.to_uppercase()
    )
}

pub fn malicious_record(hex: &str) -> String {
    format!(
        r#"{{"FileName": "dropper.bin", "SHA-256": "{}", "KnownMalicious": "malshare.com",
            "source": "malshare", "hashlookup:trust": 100}}"#,
        hex.to_uppercase()
    )
}

pub fn not_found(hex: &str) -> String {
    format!(r#"{{"message": "Non existing SHA-256", "query": "{hex}"}}"#)
}

pub fn config(server: &Server) -> Config {
    Config {
        base_url: server.base(),
        timeout: Duration::from_millis(500),
        ttl_known: Duration::from_secs(60),
        ttl_unknown: Duration::from_secs(60),
        max_entries: 100,
        backoff: Duration::ZERO,
        ..Config::default()
    }
}

pub fn client(server: &Server) -> Client {
    Client::new(config(server)).unwrap()
}
