//! Accounts on the test ejabberd: XEP-0077 in-band registration over a
//! plaintext loopback connection (about 30 ms; `ejabberdctl register`
//! boots an Erlang VM per call, about 0.45 s).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::HarnessError;
use crate::ejabberd::{DOMAIN, REGISTER_TIMEOUT};

/// XEP-0077 in-band registration of `user`@localhost on a fresh plaintext
/// c2s connection.
pub(crate) fn register_in_band(
    addr: SocketAddr,
    user: &str,
    password: &str,
) -> Result<(), HarnessError> {
    let context = format!("registering {user}@{DOMAIN} in-band at {addr}");
    let io = |e: std::io::Error| HarnessError::io(context.clone(), e);
    let deadline = Instant::now() + REGISTER_TIMEOUT;
    let mut stream = TcpStream::connect_timeout(&addr, REGISTER_TIMEOUT).map_err(io)?;
    stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .map_err(io)?;
    stream
        .set_write_timeout(Some(REGISTER_TIMEOUT))
        .map_err(io)?;
    let mut buffer = String::new();
    let mut read_until = |stream: &mut TcpStream, done: &dyn Fn(&str) -> bool| {
        loop {
            if done(&buffer) {
                return Ok(std::mem::take(&mut buffer));
            }
            if Instant::now() >= deadline {
                return Err(HarnessError::io(
                    context.clone(),
                    std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("no answer within {REGISTER_TIMEOUT:?}; got {buffer:?}"),
                    ),
                ));
            }
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk) {
                Ok(0) => {
                    return Err(HarnessError::io(
                        context.clone(),
                        std::io::Error::new(
                            std::io::ErrorKind::UnexpectedEof,
                            format!("stream closed; got {buffer:?}"),
                        ),
                    ));
                }
                Ok(n) => buffer.push_str(&String::from_utf8_lossy(&chunk[..n])),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Err(HarnessError::io(context.clone(), e)),
            }
        }
    };
    stream
        .write_all(
            format!(
                "<?xml version='1.0'?><stream:stream to='{DOMAIN}' xmlns='jabber:client' \
                 xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>"
            )
            .as_bytes(),
        )
        .map_err(io)?;
    read_until(&mut stream, &|text| text.contains("</stream:features>"))?;
    stream
        .write_all(
            format!(
                "<iq type='set' id='xbus-register'><query xmlns='jabber:iq:register'>\
                 <username>{user}</username><password>{password}</password></query></iq>"
            )
            .as_bytes(),
        )
        .map_err(io)?;
    let reply = read_until(&mut stream, &|text| {
        text.find("xbus-register").is_some_and(|at| {
            let rest = &text[at..];
            rest.contains("/>") || rest.contains("</iq>")
        })
    })?;
    let _ = stream.write_all(b"</stream:stream>");
    let ok = reply.split("<iq").any(|iq| {
        iq.contains("xbus-register")
            && (iq.contains("type='result'") || iq.contains("type=\"result\""))
    });
    if ok {
        Ok(())
    } else {
        Err(HarnessError::CommandFailed {
            command: format!("in-band registration of {user}@{DOMAIN} at {addr}"),
            status: "error reply".to_owned(),
            stdout: reply,
            stderr: String::new(),
        })
    }
}
