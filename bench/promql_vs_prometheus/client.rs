//! The timing client: one persistent HTTP/1.1 connection per server
//! (`TCP_NODELAY`), a `GET` written in one `write` and the response read
//! to its last body byte (`Content-Length` or chunked). The time taken is
//! what the server costs a client that reuses its connection, with no
//! client-side work inside it: the answer is decoded after the clock stops.
//!
//! Why not reqwest's blocking client for the timing: each call crosses to
//! reqwest's runtime thread and back (two thread wake-ups per request),
//! and decoding the JSON answer inside the timed span adds the same
//! client cost to both servers; both are constant per query on either
//! side and pull every ratio towards 1. The old measure (reqwest, JSON
//! decoded inside the span) is still printed beside the new one.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// A keep-alive connection to one server, reopened when the server closes it.
pub struct Conn {
    addr: String,
    stream: Option<BufReader<TcpStream>>,
}

impl Conn {
    /// For `base` = `http://host:port`.
    pub fn new(base: &str) -> Conn {
        Conn {
            addr: base.trim_start_matches("http://").to_string(),
            stream: None,
        }
    }

    fn connect(&self) -> std::io::Result<BufReader<TcpStream>> {
        let s = TcpStream::connect(&self.addr)?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(Duration::from_secs(300)))?;
        Ok(BufReader::with_capacity(1 << 16, s))
    }

    /// `GET path_and_query`: the status code and the body.
    pub fn get(&mut self, path_and_query: &str) -> std::io::Result<(u16, Vec<u8>)> {
        // A connection the server closed while idle fails on first use:
        // retry once on a fresh one.
        match self.try_get(path_and_query) {
            Ok(r) => Ok(r),
            Err(_) => {
                self.stream = None;
                self.try_get(path_and_query)
            }
        }
    }

    fn try_get(&mut self, path_and_query: &str) -> std::io::Result<(u16, Vec<u8>)> {
        if self.stream.is_none() {
            self.stream = Some(self.connect()?);
        }
        let req = format!(
            "GET {path_and_query} HTTP/1.1\r\nHost: {}\r\nUser-Agent: strata-bench\r\nAccept: */*\r\n\r\n",
            self.addr
        );
        let r = self.stream.as_mut().expect("connected above");
        r.get_mut().write_all(req.as_bytes())?;
        let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Err(bad("connection closed"));
        }
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("bad status line"))?;
        let (mut length, mut chunked, mut close) = (None, false, false);
        loop {
            line.clear();
            if r.read_line(&mut line)? == 0 {
                return Err(bad("connection closed in headers"));
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let Some((k, v)) = l.split_once(':') else {
                continue;
            };
            let v = v.trim();
            if k.eq_ignore_ascii_case("content-length") {
                length = v.parse::<usize>().ok();
            } else if k.eq_ignore_ascii_case("transfer-encoding") {
                chunked = v.eq_ignore_ascii_case("chunked");
            } else if k.eq_ignore_ascii_case("connection") {
                close = v.eq_ignore_ascii_case("close");
            }
        }
        let mut body = Vec::new();
        if chunked {
            loop {
                line.clear();
                r.read_line(&mut line)?;
                let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                    .map_err(|_| bad("bad chunk size"))?;
                if size == 0 {
                    // Trailers end with an empty line.
                    loop {
                        line.clear();
                        if r.read_line(&mut line)? == 0 || line.trim_end().is_empty() {
                            break;
                        }
                    }
                    break;
                }
                let at = body.len();
                body.resize(at + size, 0);
                r.read_exact(&mut body[at..])?;
                let mut crlf = [0u8; 2];
                r.read_exact(&mut crlf)?;
            }
        } else if let Some(n) = length {
            body.resize(n, 0);
            r.read_exact(&mut body)?;
        } else {
            r.read_to_end(&mut body)?;
            close = true;
        }
        if close {
            self.stream = None;
        }
        Ok((status, body))
    }
}

/// `/api/v1/query_range?...` with the parameters form-encoded.
pub fn query_range_path(query: &str, start: f64, end: f64, step: f64) -> String {
    let params = serde_urlencoded::to_string([
        ("query", query.to_string()),
        ("start", start.to_string()),
        ("end", end.to_string()),
        ("step", step.to_string()),
    ])
    .expect("encoding parameters");
    format!("/api/v1/query_range?{params}")
}
