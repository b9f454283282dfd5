//! A hand-driven XMPP client over a plain TCP socket, for what a
//! well-behaved library never does (wrong passwords, oversize stanzas,
//! never reading) and to watch stream errors and closes directly.

use std::time::Duration;

use base64::Engine;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::STEP;

/// A raw client connection.
pub struct Raw {
    pub socket: TcpStream,
    buffer: String,
}

impl Raw {
    /// Connects and opens a stream to `domain`.
    pub async fn connect(addr: std::net::SocketAddr, domain: &str) -> Raw {
        let socket = tokio::time::timeout(STEP, TcpStream::connect(addr))
            .await
            .expect("connect in time")
            .expect("connect");
        let mut raw = Raw {
            socket,
            buffer: String::new(),
        };
        raw.header(domain).await;
        raw
    }

    /// Sends a stream header.
    pub async fn header(&mut self, domain: &str) {
        self.send(&format!(
            "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
             xmlns:stream='http://etherx.jabber.org/streams' to='{domain}' version='1.0'>"
        ))
        .await;
    }

    /// Writes raw text.
    pub async fn send(&mut self, text: &str) {
        tokio::time::timeout(STEP, self.socket.write_all(text.as_bytes()))
            .await
            .expect("write in time")
            .expect("write");
    }

    /// Reads until the text received so far contains `pattern`; returns
    /// everything up to and including it and keeps the rest. `None` if the
    /// connection closed first.
    pub async fn read_until(&mut self, pattern: &str) -> Option<String> {
        let deadline = tokio::time::Instant::now() + STEP;
        loop {
            if let Some(pos) = self.buffer.find(pattern) {
                let rest = self.buffer.split_off(pos + pattern.len());
                return Some(std::mem::replace(&mut self.buffer, rest));
            }
            let mut chunk = [0u8; 8192];
            let read = tokio::time::timeout_at(deadline, self.socket.read(&mut chunk))
                .await
                .unwrap_or_else(|_| {
                    panic!("timed out waiting for {pattern:?}; got {:?}", self.buffer)
                });
            match read {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buffer.push_str(&String::from_utf8_lossy(&chunk[..n])),
            }
        }
    }

    /// Reads until the peer closes; returns what arrived.
    pub async fn read_to_close(&mut self) -> String {
        let deadline = tokio::time::Instant::now() + STEP;
        loop {
            let mut chunk = [0u8; 8192];
            let read = tokio::time::timeout_at(deadline, self.socket.read(&mut chunk))
                .await
                .unwrap_or_else(|_| panic!("connection not closed; got {:?}", self.buffer));
            match read {
                Ok(0) | Err(_) => return std::mem::take(&mut self.buffer),
                Ok(n) => self.buffer.push_str(&String::from_utf8_lossy(&chunk[..n])),
            }
        }
    }

    /// SASL PLAIN; returns whether the server accepted.
    pub async fn auth_plain(&mut self, user: &str, password: &str) -> bool {
        self.read_until("</stream:features>")
            .await
            .expect("features");
        let token =
            base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"));
        self.send(&format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>"
        ))
        .await;
        loop {
            let answer = self.read_until(">").await.unwrap_or_default();
            if answer.contains("<success") {
                return true;
            }
            if answer.contains("<failure") || answer.is_empty() {
                return false;
            }
        }
    }

    /// Logs in with PLAIN and binds `resource`; panics on failure.
    pub async fn login(
        addr: std::net::SocketAddr,
        user: &str,
        password: &str,
        resource: &str,
    ) -> Raw {
        let mut raw = Raw::connect(addr, "localhost").await;
        assert!(raw.auth_plain(user, password).await, "login refused");
        raw.header("localhost").await;
        raw.read_until("</stream:features>")
            .await
            .expect("features");
        raw.send(&format!(
            "<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>\
             <resource>{resource}</resource></bind></iq>"
        ))
        .await;
        let bound = raw.read_until("</iq>").await.expect("bind result");
        assert!(
            bound.contains("type='result'") || bound.contains("type=\"result\""),
            "{bound}"
        );
        raw
    }
}

/// Sleeps a little (for "nothing arrives" checks).
pub async fn settle() {
    tokio::time::sleep(Duration::from_millis(200)).await;
}
