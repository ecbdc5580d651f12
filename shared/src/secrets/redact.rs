//! [`redact_url`]: a connection URL that is safe to print.

/// The URL with the password of its user-info replaced by `***`
/// (`amqp://guest:***@host:5672/%2f`, `redis://:***@host:6379/0`): for logs, summaries
/// and errors, where broker and Redis URLs appear and may carry a password. A user name
/// without a password is kept (it is not a secret, and it helps the reader); an `@` inside
/// the password is handled (the last `@` of the authority ends the user-info).
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn passwords_are_hidden_and_the_rest_kept() {
        assert_eq!(
            redact_url("amqp://guest:guest@127.0.0.1:5672/%2f"),
            "amqp://guest:***@127.0.0.1:5672/%2f"
        );
        assert_eq!(redact_url("redis://:pw@h:6379/0"), "redis://:***@h:6379/0");
        assert_eq!(
            redact_url("rediss://user:s3cret@host"),
            "rediss://user:***@host"
        );
        assert_eq!(redact_url("redis://u:p@ss@host/"), "redis://u:***@host/");
        assert_eq!(redact_url("redis://user@h"), "redis://user@h");
        assert_eq!(redact_url("redis://h:6379"), "redis://h:6379");
        assert_eq!(redact_url("not a url"), "not a url");
    }
}
