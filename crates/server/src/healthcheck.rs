//! `molecule-server healthcheck`: one `GET /health` to the server on this machine over a
//! plain TCP connection (no runtime, no TLS), for a container `HEALTHCHECK` in an image that
//! has no shell or curl.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::time::Duration;

/// How long the connection, the request and the answer may each take.
pub const TIMEOUT: Duration = Duration::from_secs(3);

/// Why the server is not healthy.
#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    /// Nothing answered, or the exchange broke off.
    #[error("cannot reach the server at {0}: {1}")]
    Unreachable(SocketAddr, std::io::Error),
    /// The server answered something other than 200 (its status line).
    #[error("GET /health answered {0:?}")]
    Unhealthy(String),
}

/// Where to ask a server listening on `host:port`: an unspecified address (`0.0.0.0`, `::`)
/// is asked on loopback.
pub fn probe_address(host: IpAddr, port: u16) -> SocketAddr {
    let ip = match host {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, port)
}

/// `GET /health` at `addr`: `Ok` when the answer's status is 200.
pub fn check(addr: SocketAddr, timeout: Duration) -> Result<(), HealthError> {
    let io = |e| HealthError::Unreachable(addr, e);
    let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(io)?;
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .map_err(io)?;
    // The status line is all that matters; the answer is small and the server closes.
    let mut head = Vec::new();
    stream.take(1024).read_to_end(&mut head).map_err(io)?;
    let text = String::from_utf8_lossy(&head);
    let status_line = text.lines().next().unwrap_or_default().trim().to_owned();
    if status_line.split_whitespace().nth(1) == Some("200") {
        Ok(())
    } else {
        Err(HealthError::Unhealthy(status_line))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unspecified_hosts_are_asked_on_loopback() {
        assert_eq!(
            probe_address("0.0.0.0".parse().unwrap(), 8080),
            "127.0.0.1:8080".parse().unwrap()
        );
        assert_eq!(
            probe_address("::".parse().unwrap(), 1),
            "[::1]:1".parse().unwrap()
        );
        assert_eq!(
            probe_address("10.0.0.2".parse().unwrap(), 80),
            "10.0.0.2:80".parse().unwrap()
        );
    }

    #[test]
    fn nothing_listening_is_unreachable() {
        // A port just released by the OS has nothing listening on it.
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = free.local_addr().unwrap();
        drop(free);
        assert!(matches!(
            check(addr, TIMEOUT),
            Err(HealthError::Unreachable(..))
        ));
    }
}
