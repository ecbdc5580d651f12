//! Passive-mode address policy: which address ferry dials for a data connection.
//!
//! The reply to `EPSV` names only a port (RFC 2428): the data connection goes to the control
//! connection's peer, always. The reply to `PASV` names an address and a port, and that
//! address is where a hostile or misconfigured server could point ferry anywhere: at a host
//! inside the worker's network (FTP bounce, server-side request forgery) or at a third party.
//! So a `PASV` address is used only when it *is* the control peer. Otherwise:
//! - `nat_workaround: true` (the default, as curl and lftp do): the peer's address is used
//!   with the advertised port (a server behind NAT that advertises its private address);
//! - `nat_workaround: false`: the address is dialled only when the partner lists it in
//!   `allowed_data_addresses` (hardened mode refuses that option); any other is refused with
//!   [`FtpsErrorKind::PassiveMode`], naming the address, and is never connected to.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use super::error::{FtpsError, FtpsErrorKind};
use super::reply::Response;

/// How a session picks data addresses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PassivePolicy {
    /// Replace a foreign PASV address by the control peer's.
    pub(crate) nat_workaround: bool,
    /// Foreign PASV addresses that may be dialled when the workaround is off.
    pub(crate) allowed: Vec<IpAddr>,
}

/// Where a data connection goes, and what the server said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DataTarget {
    /// The address ferry dials.
    pub(crate) addr: SocketAddr,
    /// The address the server advertised, when ferry dials another (NAT workaround).
    pub(crate) replaced: Option<SocketAddr>,
}

/// The port of an `EPSV` reply: `229 Entering Extended Passive Mode (|||6446|)`.
pub(crate) fn parse_epsv(text: &str) -> Option<u16> {
    let open = text.find('(')?;
    let inner = &text[open + 1..text[open..].find(')')? + open];
    let d = inner.chars().next()?;
    let parts: Vec<&str> = inner.split(d).collect();
    // "|||6446|" splits into ["", "", "", "6446", ""].
    if parts.len() != 5 {
        return None;
    }
    parts[3].parse().ok().filter(|p| *p != 0)
}

/// The address and port of a `PASV` reply: `227 Entering Passive Mode (h1,h2,h3,h4,p1,p2)`
/// (some servers leave out the parentheses).
pub(crate) fn parse_pasv(text: &str) -> Option<SocketAddr> {
    let start = text.find(|c: char| c.is_ascii_digit())?;
    let numbers: Vec<u8> = text[start..]
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .take(6)
        .map(|s| s.parse::<u8>().ok())
        .collect::<Option<Vec<u8>>>()?;
    if numbers.len() != 6 {
        return None;
    }
    let ip = Ipv4Addr::new(numbers[0], numbers[1], numbers[2], numbers[3]);
    let port = u16::from(numbers[4]) << 8 | u16::from(numbers[5]);
    (port != 0).then(|| SocketAddr::new(IpAddr::V4(ip), port))
}

impl PassivePolicy {
    /// The target of an `EPSV` reply: the control peer, at the port named.
    pub(crate) fn epsv(
        &self,
        step: &str,
        peer: SocketAddr,
        reply: &Response,
    ) -> Result<DataTarget, FtpsError> {
        let port = parse_epsv(reply.first_text()).ok_or_else(|| unparsable(step, reply))?;
        Ok(DataTarget {
            addr: SocketAddr::new(peer.ip(), port),
            replaced: None,
        })
    }

    /// The target of a `PASV` reply, under the policy in the module docs.
    pub(crate) fn pasv(
        &self,
        step: &str,
        peer: SocketAddr,
        reply: &Response,
    ) -> Result<DataTarget, FtpsError> {
        let advertised = reply
            .lines
            .iter()
            .find_map(|l| parse_pasv(l.get(4..).unwrap_or("")))
            .ok_or_else(|| unparsable(step, reply))?;
        if advertised.ip() == peer.ip() || self.allowed.contains(&advertised.ip()) {
            return Ok(DataTarget {
                addr: advertised,
                replaced: None,
            });
        }
        if self.nat_workaround {
            return Ok(DataTarget {
                addr: SocketAddr::new(peer.ip(), advertised.port()),
                replaced: Some(advertised),
            });
        }
        Err(FtpsError::new(
            FtpsErrorKind::PassiveMode,
            step,
            format!(
                "the server's PASV reply names {advertised}, which is not the control \
                 connection's peer {}; ferry refuses to dial it (list it in \
                 connection.allowed_data_addresses if it is the partner's, or set \
                 connection.nat_workaround: true to use the peer's address)",
                peer.ip()
            ),
        )
        .transient(false))
    }
}

fn unparsable(step: &str, reply: &Response) -> FtpsError {
    FtpsError::new(
        FtpsErrorKind::PassiveMode,
        step,
        "the server's passive-mode reply names no usable address",
    )
    .with_reply(reply.to_reply())
    .transient(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(code: u32, text: &str) -> Response {
        Response {
            code,
            lines: vec![format!("{code} {text}")],
        }
    }

    fn peer() -> SocketAddr {
        "127.0.0.1:21".parse().unwrap()
    }

    #[test]
    fn epsv_replies_give_a_port_on_the_peer() {
        assert_eq!(
            parse_epsv("Entering Extended Passive Mode (|||6446|)"),
            Some(6446)
        );
        assert_eq!(parse_epsv("ok (!!!5000!)"), Some(5000));
        assert_eq!(parse_epsv("(|||0|)"), None);
        assert_eq!(parse_epsv("no parens"), None);
        let p = PassivePolicy::default();
        let t = p.epsv("s", peer(), &response(229, "x (|||4000|)")).unwrap();
        assert_eq!(t.addr, "127.0.0.1:4000".parse().unwrap());
    }

    #[test]
    fn pasv_replies_parse_with_or_without_parentheses() {
        assert_eq!(
            parse_pasv("Entering Passive Mode (127,0,0,2,19,137)."),
            Some("127.0.0.2:5001".parse().unwrap())
        );
        assert_eq!(
            parse_pasv("Entering Passive Mode 10,0,0,1,0,21"),
            Some("10.0.0.1:21".parse().unwrap())
        );
        assert_eq!(parse_pasv("Entering Passive Mode (300,0,0,1,0,21)"), None);
        assert_eq!(parse_pasv("(1,2,3)"), None);
    }

    #[test]
    fn foreign_pasv_address_is_replaced_allowed_or_refused() {
        let foreign = response(227, "Entering Passive Mode (127,0,0,2,19,137)");
        let nat = PassivePolicy {
            nat_workaround: true,
            allowed: vec![],
        };
        let t = nat.pasv("s", peer(), &foreign).unwrap();
        assert_eq!(t.addr, "127.0.0.1:5001".parse().unwrap());
        assert_eq!(t.replaced, Some("127.0.0.2:5001".parse().unwrap()));

        let strict = PassivePolicy::default();
        let e = strict.pasv("s", peer(), &foreign).unwrap_err();
        assert_eq!(e.kind(), FtpsErrorKind::PassiveMode);
        assert!(e.to_string().contains("127.0.0.2:5001"), "{e}");
        assert!(!e.is_transient());

        let allowed = PassivePolicy {
            nat_workaround: false,
            allowed: vec!["127.0.0.2".parse().unwrap()],
        };
        let t = allowed.pasv("s", peer(), &foreign).unwrap();
        assert_eq!(t.addr, "127.0.0.2:5001".parse().unwrap());
        assert_eq!(t.replaced, None);
    }
}
