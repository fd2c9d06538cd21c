//! The connection string: libpq's `key=value` form and URLs, and the parameters the store reads
//! itself and takes out before the string reaches the driver.

use checkpoint_core::{Error, Result};

/// Parameters of the connection string that the store reads itself and takes out before the
/// string reaches the driver: the pool settings of pgx / LangGraphGo, and the TLS settings the
/// driver does not know (`verify-ca`, `verify-full`, `sslrootcert`).
pub(crate) const OWN_PARAMETERS: [&str; 12] = [
    "statement_cache",
    "group_commit",
    "group_commit_max_saves",
    "state_encoding",
    "snapshot_every",
    "compression",
    "pool_max_conns",
    "pool_min_conns",
    "pool_max_conn_lifetime",
    "pool_max_conn_idle_time",
    "sslmode",
    "sslrootcert",
];

/// Splits a connection string into what the driver reads and the store's own parameters.
pub(crate) fn split_own_parameters(input: &str) -> Result<(String, Vec<(String, String)>)> {
    let is_pool = |key: &str| OWN_PARAMETERS.contains(&key);
    if input.starts_with("postgres://") || input.starts_with("postgresql://") {
        let Some((base, query)) = input.split_once('?') else {
            return Ok((input.to_owned(), Vec::new()));
        };
        let mut pool = Vec::new();
        let mut kept = form_urlencoded::Serializer::new(String::new());
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            if is_pool(&key) {
                pool.push((key.into_owned(), value.into_owned()));
            } else {
                kept.append_pair(&key, &value);
            }
        }
        let kept = kept.finish();
        let rebuilt = if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{kept}")
        };
        return Ok((rebuilt, pool));
    }
    let mut pool = Vec::new();
    let mut kept = Vec::new();
    for (key, value) in parse_key_values(input)? {
        if is_pool(&key) {
            pool.push((key, value));
        } else {
            let escaped = value.replace('\\', "\\\\").replace('\'', "\\'");
            kept.push(format!("{key}='{escaped}'"));
        }
    }
    Ok((kept.join(" "), pool))
}

/// Parses libpq's `key=value` form: whitespace-separated pairs, values optionally single-quoted
/// with backslash escapes.
fn parse_key_values(input: &str) -> Result<Vec<(String, String)>> {
    let malformed = |why: &str| Error::invalid("connection_string", why.to_owned());
    let mut pairs = Vec::new();
    let mut chars = input.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(pairs);
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(malformed(&format!("expected `=` after {key:?}")));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    Some('\'') => break,
                    Some('\\') => match chars.next() {
                        Some(c) => value.push(c),
                        None => return Err(malformed("unterminated escape")),
                    },
                    Some(c) => value.push(c),
                    None => return Err(malformed("unterminated quoted value")),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                value.push(c);
            }
        }
        pairs.push((key, value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_driver_never_sees_pool_parameters() {
        let (rest, pool) = split_own_parameters("postgres://h/db?pool_max_conns=2").unwrap();
        assert_eq!(rest, "postgres://h/db");
        assert_eq!(pool, vec![("pool_max_conns".into(), "2".into())]);
        let (rest, _) = split_own_parameters("host=h pool_min_conns=1 port=5").unwrap();
        assert_eq!(rest, "host='h' port='5'");
    }
}
