//! [`AmqpUrl`]: the broker's address, which carries a password and so must never be
//! printed as given.

use std::fmt;

use lapin::uri::AMQPUri;

use super::BrokerError;

/// A parsed `amqp://` or `amqps://` URL. `Display` and `Debug` show it with the password
/// replaced by `***`, so it can go into logs and errors as it is.
#[derive(Clone)]
pub struct AmqpUrl {
    uri: AMQPUri,
    redacted: String,
}

impl AmqpUrl {
    /// Parses `url` (`amqp://user:password@host:port/vhost?heartbeat=10`); the error never
    /// repeats the URL.
    pub fn parse(url: &str) -> Result<Self, BrokerError> {
        let uri: AMQPUri = url.parse().map_err(|_| BrokerError::InvalidUrl {
            reason: "expected amqp://user:password@host:port/vhost (or amqps://)".into(),
        })?;
        let authority = &uri.authority;
        let vhost = if uri.vhost == "/" {
            "%2f".to_string()
        } else {
            uri.vhost.clone()
        };
        let redacted = format!(
            "{}://{}:***@{}:{}/{}",
            match uri.scheme {
                lapin::uri::AMQPScheme::AMQP => "amqp",
                lapin::uri::AMQPScheme::AMQPS => "amqps",
            },
            authority.userinfo.username,
            authority.host,
            authority.port,
            vhost
        );
        Ok(AmqpUrl { uri, redacted })
    }

    /// The virtual host the URL names.
    pub fn vhost(&self) -> &str {
        &self.uri.vhost
    }

    /// The broker's host name or address (span attribute `server.address`).
    pub fn host(&self) -> &str {
        &self.uri.authority.host
    }

    /// The broker's port (span attribute `server.port`).
    pub fn port(&self) -> u16 {
        self.uri.authority.port
    }

    /// The parsed URI, for lapin only.
    pub(crate) fn uri(&self) -> AMQPUri {
        self.uri.clone()
    }
}

impl fmt::Display for AmqpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted)
    }
}

impl fmt::Debug for AmqpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AmqpUrl({})", self.redacted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_shows_the_password() {
        let url = AmqpUrl::parse("amqp://ferry:s3cr3t@rabbit.internal:5673/prod").unwrap();
        assert_eq!(
            url.to_string(),
            "amqp://ferry:***@rabbit.internal:5673/prod"
        );
        assert!(!format!("{url:?}").contains("s3cr3t"));
        assert_eq!(url.vhost(), "prod");
        let default = AmqpUrl::parse("amqp://guest:guest@127.0.0.1:5672/%2f").unwrap();
        assert_eq!(default.vhost(), "/");
    }

    #[test]
    fn parse_errors_do_not_echo_the_url() {
        let err = AmqpUrl::parse("http://u:s3cr3t@host").unwrap_err();
        assert!(!err.to_string().contains("s3cr3t"), "{err}");
        let err = AmqpUrl::parse("not a url s3cr3t").unwrap_err();
        assert!(!err.to_string().contains("s3cr3t"), "{err}");
    }
}
