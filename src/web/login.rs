//! What the login form needs before anyone is logged in, without storing
//! anything on the server: its CSRF token, carried by a cookie the server
//! signs, and the client's address, which login throttling counts.

use std::net::IpAddr;

use axum::http::{HeaderMap, HeaderValue, header};
use subtle::ConstantTimeEq;
use tower_sessions::cookie::{Cookie, SameSite};

/// The cookie holding the login form's token (sent to `/login` only).
pub const COOKIE: &str = "diskette_login";
/// How long a login form can wait before it must be reloaded.
const LIFETIME_SECS: i64 = 3600;

/// The key signing login form tokens: a secret of the registry, so every
/// server process sharing it, and every restart, accepts the same tokens.
pub struct LoginKey(Vec<u8>);

impl LoginKey {
    pub fn new(secret: &str) -> LoginKey {
        LoginKey(secret.as_bytes().to_vec())
    }

    fn mac(&self, token: &str, issued: i64) -> String {
        blake2b_simd::Params::new()
            .hash_length(32)
            .key(&self.0[..self.0.len().min(64)])
            .personal(b"diskette-login")
            .to_state()
            .update(token.as_bytes())
            .update(b".")
            .update(issued.to_string().as_bytes())
            .finalize()
            .to_hex()
            .to_string()
    }

    /// A new token and the cookie value carrying it: `token.issued.mac`.
    fn issue(&self, now: i64) -> (String, String) {
        let token = crate::users::random_token(32);
        let value = format!("{token}.{now}.{}", self.mac(&token, now));
        (token, value)
    }

    /// The token of a cookie value this key signed less than an hour ago.
    fn verify(&self, value: &str, now: i64) -> Option<String> {
        let mut parts = value.split('.');
        let (token, issued, mac) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || token.is_empty() {
            return None;
        }
        let issued: i64 = issued.parse().ok()?;
        let fresh = issued <= now + 60 && now - issued < LIFETIME_SECS;
        let signed = bool::from(self.mac(token, issued).as_bytes().ct_eq(mac.as_bytes()));
        (fresh && signed).then(|| token.to_string())
    }
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// The token of the request's login cookie, if the cookie is valid.
pub fn token_of(headers: &HeaderMap, key: &LoginKey) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(|c| c.ok())
        .filter(|c| c.name() == COOKIE)
        .find_map(|c| key.verify(c.value(), now()))
}

/// The token for a login form: the one of the request's cookie while it is
/// valid (several tabs keep working), else a new one with its `Set-Cookie`.
pub fn form_token(
    headers: &HeaderMap,
    key: &LoginKey,
    secure: bool,
) -> (String, Option<HeaderValue>) {
    if let Some(token) = token_of(headers, key) {
        return (token, None);
    }
    let (token, value) = key.issue(now());
    let cookie = Cookie::build((COOKIE, value))
        .path("/login")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(secure)
        .max_age(time::Duration::seconds(LIFETIME_SECS))
        .build();
    (token, HeaderValue::from_str(&cookie.to_string()).ok())
}

/// The `Set-Cookie` that removes the login cookie once it has served.
pub fn removal(secure: bool) -> HeaderValue {
    let cookie = Cookie::build((COOKIE, ""))
        .path("/login")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(secure)
        .max_age(time::Duration::ZERO)
        .build();
    HeaderValue::from_str(&cookie.to_string()).expect("a cookie is a valid header value")
}

/// The client's address: the connection's peer, unless the peer is a trusted
/// proxy; then `X-Forwarded-For` is read from the right (the hop the proxy
/// added) past every trusted proxy. Whatever a client wrote on the left of
/// the list is never believed.
pub fn client_ip(
    headers: &HeaderMap,
    peer: IpAddr,
    trusted: &crate::config::TrustedProxies,
) -> IpAddr {
    let mut client = peer.to_canonical();
    if !trusted.contains(client) {
        return client;
    }
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .collect();
    for hop in hops.iter().rev() {
        let Ok(ip) = hop.trim().parse::<IpAddr>() else {
            break;
        };
        client = ip.to_canonical();
        if !trusted.contains(client) {
            break;
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_signed_and_expire() {
        let key = LoginKey::new("a secret of at least thirty-two bytes");
        let (token, value) = key.issue(1_000_000);
        assert_eq!(
            key.verify(&value, 1_000_010).as_deref(),
            Some(token.as_str())
        );
        assert_eq!(key.verify(&value, 1_000_000 + LIFETIME_SECS), None);
        let other = LoginKey::new("another secret of thirty-two bytes");
        assert_eq!(other.verify(&value, 1_000_010), None);
        let forged = format!("x{value}");
        assert_eq!(key.verify(&forged, 1_000_010), None);
        assert_eq!(key.verify("a.b.c.d", 1_000_010), None);
    }

    #[test]
    fn forwarded_for_is_read_from_trusted_proxies_only() {
        let trusted: crate::config::TrustedProxies =
            toml::Value::Array(vec!["10.0.0.0/8".into(), "127.0.0.1".into()])
                .try_into()
                .unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            HeaderValue::from_static("1.1.1.1, 203.0.113.7, 10.1.2.3"),
        );
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            client_ip(&headers, ip("127.0.0.1"), &trusted),
            ip("203.0.113.7")
        );
        assert_eq!(
            client_ip(&headers, ip("::ffff:127.0.0.1"), &trusted),
            ip("203.0.113.7")
        );
        assert_eq!(
            client_ip(&headers, ip("192.0.2.1"), &trusted),
            ip("192.0.2.1")
        );
        headers.insert(
            "x-forwarded-for",
            HeaderValue::from_static("garbage, 10.9.9.9"),
        );
        assert_eq!(
            client_ip(&headers, ip("127.0.0.1"), &trusted),
            ip("10.9.9.9")
        );
        headers.remove("x-forwarded-for");
        assert_eq!(
            client_ip(&headers, ip("127.0.0.1"), &trusted),
            ip("127.0.0.1")
        );
    }
}
