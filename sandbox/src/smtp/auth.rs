//! SMTP AUTH (RFC 4954) with the PLAIN (RFC 4616) and LOGIN mechanisms, free of I/O.
//!
//! The session drives the exchange: it sends the challenges named here and hands each client
//! line to [`decode`], then checks the outcome against the configured [`SmtpCredentials`].

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

/// `Username:` in base64, the first LOGIN challenge.
pub(crate) const USERNAME_CHALLENGE: &str = "VXNlcm5hbWU6";

/// `Password:` in base64, the second LOGIN challenge.
pub(crate) const PASSWORD_CHALLENGE: &str = "UGFzc3dvcmQ6";

/// The one account the sandbox accepts when AUTH is on.
#[derive(Clone, PartialEq, Eq)]
pub struct SmtpCredentials {
    /// User name, compared exactly.
    pub username: String,
    /// Password, compared exactly.
    pub password: String,
}

impl SmtpCredentials {
    /// Makes credentials from a user name and password.
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        Self {
            username: username.into(),
            password: password.into(),
        }
    }

    /// Tells whether a client presented exactly these credentials.
    pub(crate) fn accepts(&self, username: &str, password: &str) -> bool {
        self.username == username && self.password == password
    }
}

impl fmt::Debug for SmtpCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpCredentials")
            .field("username", &self.username)
            .field("password", &"***")
            .finish()
    }
}

/// A SASL mechanism the sandbox offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mechanism {
    Plain,
    Login,
}

impl Mechanism {
    /// The mechanisms as advertised in the EHLO reply.
    pub const ADVERTISED: &str = "AUTH PLAIN LOGIN";

    /// Recognises a mechanism name, case-insensitively.
    pub fn parse(name: &str) -> Option<Self> {
        if name.eq_ignore_ascii_case("PLAIN") {
            Some(Self::Plain)
        } else if name.eq_ignore_ascii_case("LOGIN") {
            Some(Self::Login)
        } else {
            None
        }
    }
}

/// Why an AUTH exchange ended without checking credentials, with the reply it earns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AuthError {
    /// The client answered a challenge with `*`.
    Cancelled,
    /// A response was not valid base64.
    InvalidBase64,
    /// The decoded PLAIN response or LOGIN answer was not text of the expected shape.
    Malformed,
}

impl AuthError {
    /// Returns the reply code and text for this error.
    pub fn reply(self) -> (u16, &'static str) {
        match self {
            Self::Cancelled => (501, "5.7.0 authentication cancelled"),
            Self::InvalidBase64 => (501, "5.5.2 cannot decode base64 response"),
            Self::Malformed => (501, "5.5.2 malformed authentication response"),
        }
    }
}

/// Decodes one client response; `=` stands for an empty one (RFC 4954 section 4).
pub(crate) fn decode(response: &str) -> Result<Vec<u8>, AuthError> {
    match response.trim() {
        "*" => Err(AuthError::Cancelled),
        "=" => Ok(Vec::new()),
        text => BASE64.decode(text).map_err(|_| AuthError::InvalidBase64),
    }
}

/// Decodes a LOGIN answer (a user name or a password) into text.
pub(crate) fn login_answer(decoded: Vec<u8>) -> Result<String, AuthError> {
    String::from_utf8(decoded).map_err(|_| AuthError::Malformed)
}

/// Splits a decoded PLAIN response, `authzid NUL authcid NUL password`, into the user name
/// and password.
///
/// An authorization identity other than the user itself is refused: the sandbox has no notion
/// of acting on behalf of another user.
pub(crate) fn plain(decoded: &[u8]) -> Result<(String, String), AuthError> {
    let text = std::str::from_utf8(decoded).map_err(|_| AuthError::Malformed)?;
    let mut parts = text.split('\0');
    let (Some(authzid), Some(user), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthError::Malformed);
    };
    if user.is_empty() || !(authzid.is_empty() || authzid == user) {
        return Err(AuthError::Malformed);
    }
    Ok((user.to_owned(), password.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_responses_split_into_user_and_password() {
        let decoded = decode(&BASE64.encode("\0alice\0s3cret")).unwrap();
        assert_eq!(
            plain(&decoded),
            Ok(("alice".to_owned(), "s3cret".to_owned()))
        );
        let decoded = decode(&BASE64.encode("alice\0alice\0pw")).unwrap();
        assert_eq!(plain(&decoded), Ok(("alice".to_owned(), "pw".to_owned())));
        assert_eq!(plain(b"bob\0alice\0pw"), Err(AuthError::Malformed));
        assert_eq!(plain(b"\0alice"), Err(AuthError::Malformed));
        assert_eq!(plain(b"\0\0pw"), Err(AuthError::Malformed));
        assert_eq!(plain(b"\0a\0b\0c"), Err(AuthError::Malformed));
        assert_eq!(plain(b"\0a\0\xff"), Err(AuthError::Malformed));
    }

    #[test]
    fn responses_decode_or_cancel() {
        assert_eq!(decode("*"), Err(AuthError::Cancelled));
        assert_eq!(decode("="), Ok(Vec::new()));
        assert_eq!(decode("not base64!"), Err(AuthError::InvalidBase64));
        assert_eq!(decode("YWxpY2U="), Ok(b"alice".to_vec()));
        assert_eq!(login_answer(b"alice".to_vec()), Ok("alice".to_owned()));
        assert_eq!(login_answer(vec![0xff]), Err(AuthError::Malformed));
    }

    #[test]
    fn challenges_are_the_customary_prompts() {
        assert_eq!(BASE64.decode(USERNAME_CHALLENGE).unwrap(), b"Username:");
        assert_eq!(BASE64.decode(PASSWORD_CHALLENGE).unwrap(), b"Password:");
    }

    #[test]
    fn mechanisms_and_credentials() {
        assert_eq!(Mechanism::parse("plain"), Some(Mechanism::Plain));
        assert_eq!(Mechanism::parse("LOGIN"), Some(Mechanism::Login));
        assert_eq!(Mechanism::parse("CRAM-MD5"), None);
        let credentials = SmtpCredentials::new("alice", "s3cret");
        assert!(credentials.accepts("alice", "s3cret"));
        assert!(!credentials.accepts("alice", "S3CRET"));
        assert!(!credentials.accepts("Alice", "s3cret"));
        assert!(!format!("{credentials:?}").contains("s3cret"));
    }
}
