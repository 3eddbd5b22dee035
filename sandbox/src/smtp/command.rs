//! Parsing of SMTP command lines (RFC 5321 section 4.1), free of I/O.

/// A recognised SMTP command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Command<'a> {
    Ehlo {
        domain: &'a str,
    },
    Helo {
        domain: &'a str,
    },
    /// `MAIL FROM`; `from` is empty for the null reverse path.
    Mail {
        from: &'a str,
    },
    Rcpt {
        to: &'a str,
    },
    Data,
    /// `STARTTLS` (RFC 3207).
    StartTls,
    /// `AUTH mechanism [initial-response]` (RFC 4954); the mechanism is not checked here.
    Auth {
        mechanism: &'a str,
        initial_response: Option<&'a str>,
    },
    Rset,
    Noop,
    Vrfy,
    Help,
    Quit,
    /// Commands the sandbox knows but does not offer (EXPN).
    NotImplemented,
}

/// Why a command line was refused, with the reply it earns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ParseError {
    Unrecognized,
    Syntax(&'static str),
    UnsupportedParameter,
    TooLarge,
}

impl ParseError {
    /// Returns the reply code and text for this error.
    pub fn reply(self) -> (u16, &'static str) {
        match self {
            Self::Unrecognized => (500, "5.5.2 command not recognized"),
            Self::Syntax(text) => (501, text),
            Self::UnsupportedParameter => (555, "5.5.4 parameter not recognized"),
            Self::TooLarge => (552, "5.3.4 message size exceeds fixed maximum message size"),
        }
    }
}

/// Parses one command line, without its line terminator.
///
/// `max_size` is the advertised `SIZE`; a `MAIL FROM` declaring more is refused up front.
pub(crate) fn parse(line: &[u8], max_size: u64) -> Result<Command<'_>, ParseError> {
    let line = std::str::from_utf8(line).map_err(|_| ParseError::Syntax("5.5.2 invalid utf-8"))?;
    let line = line.trim_end_matches([' ', '\t']);
    let (verb, rest) = line.split_once(' ').unwrap_or((line, ""));
    let rest = rest.trim_start();
    let is = |name: &str| verb.eq_ignore_ascii_case(name);
    if is("EHLO") || is("HELO") {
        let domain = required_argument(rest, "5.5.4 domain required")?;
        return Ok(if is("EHLO") {
            Command::Ehlo { domain }
        } else {
            Command::Helo { domain }
        });
    }
    if is("MAIL") {
        let rest = strip_prefix_ignore_case(rest, "FROM:")
            .ok_or(ParseError::Syntax("5.5.4 syntax: MAIL FROM:<address>"))?;
        let (from, params) = path(rest)?;
        mail_parameters(params, max_size)?;
        return Ok(Command::Mail { from });
    }
    if is("RCPT") {
        let rest = strip_prefix_ignore_case(rest, "TO:")
            .ok_or(ParseError::Syntax("5.5.4 syntax: RCPT TO:<address>"))?;
        let (to, params) = path(rest)?;
        if to.is_empty() {
            return Err(ParseError::Syntax("5.1.3 recipient address required"));
        }
        if !params.is_empty() {
            return Err(ParseError::UnsupportedParameter);
        }
        return Ok(Command::Rcpt { to });
    }
    let no_argument = |command| {
        if rest.is_empty() {
            Ok(command)
        } else {
            Err(ParseError::Syntax("5.5.4 no parameters allowed"))
        }
    };
    if is("DATA") {
        no_argument(Command::Data)
    } else if is("RSET") {
        no_argument(Command::Rset)
    } else if is("QUIT") {
        no_argument(Command::Quit)
    } else if is("STARTTLS") {
        no_argument(Command::StartTls)
    } else if is("NOOP") {
        Ok(Command::Noop)
    } else if is("VRFY") {
        required_argument(rest, "5.5.4 argument required").map(|_| Command::Vrfy)
    } else if is("HELP") {
        Ok(Command::Help)
    } else if is("AUTH") {
        let mut arguments = rest.split_whitespace();
        let mechanism = arguments
            .next()
            .ok_or(ParseError::Syntax("5.5.4 mechanism required"))?;
        let initial_response = arguments.next();
        if arguments.next().is_some() {
            return Err(ParseError::Syntax("5.5.4 too many arguments"));
        }
        Ok(Command::Auth {
            mechanism,
            initial_response,
        })
    } else if is("EXPN") {
        Ok(Command::NotImplemented)
    } else {
        Err(ParseError::Unrecognized)
    }
}

fn required_argument<'a>(rest: &'a str, missing: &'static str) -> Result<&'a str, ParseError> {
    match rest.split_whitespace().next() {
        Some(argument) => Ok(argument),
        None => Err(ParseError::Syntax(missing)),
    }
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| s[prefix.len()..].trim_start())
}

/// Splits `<path> params` into the address and the parameter text.
///
/// Accepts a bare address without brackets too, as lenient servers do, and drops an obsolete
/// source route (`<@relay:user@host>`).
fn path(s: &str) -> Result<(&str, &str), ParseError> {
    let Some(inner) = s.strip_prefix('<') else {
        let (address, params) = s.split_once(' ').unwrap_or((s, ""));
        if address.is_empty() || address.contains(['<', '>']) {
            return Err(ParseError::Syntax("5.1.7 invalid address"));
        }
        return Ok((address, params.trim_start()));
    };
    let close = closing_bracket(inner).ok_or(ParseError::Syntax("5.1.7 invalid address"))?;
    let mut address = &inner[..close];
    let params = inner[close + 1..].trim_start();
    if address.starts_with('@') {
        let (_, mailbox) = address
            .split_once(':')
            .ok_or(ParseError::Syntax("5.1.7 invalid address"))?;
        address = mailbox;
    }
    if address.contains([' ', '\t', '<']) && !address.starts_with('"') {
        return Err(ParseError::Syntax("5.1.7 invalid address"));
    }
    if !params.is_empty() && inner.as_bytes().get(close + 1) != Some(&b' ') {
        return Err(ParseError::Syntax("5.5.4 space required before parameters"));
    }
    Ok((address, params))
}

/// Finds the `>` that closes a path, skipping a quoted local part such as `"a>b"@host`.
fn closing_bracket(s: &str) -> Option<usize> {
    let mut quoted = false;
    let mut escaped = false;
    for (index, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '>' if !quoted => return Some(index),
            _ => {}
        }
    }
    None
}

/// Checks the `MAIL FROM` parameters the sandbox advertises: SIZE, BODY and SMTPUTF8.
fn mail_parameters(params: &str, max_size: u64) -> Result<(), ParseError> {
    for param in params.split_whitespace() {
        let (key, value) = param.split_once('=').unwrap_or((param, ""));
        if key.eq_ignore_ascii_case("SIZE") {
            let size: u64 = value
                .parse()
                .map_err(|_| ParseError::Syntax("5.5.4 invalid SIZE parameter"))?;
            if size > max_size {
                return Err(ParseError::TooLarge);
            }
        } else if key.eq_ignore_ascii_case("BODY") {
            if !value.eq_ignore_ascii_case("7BIT") && !value.eq_ignore_ascii_case("8BITMIME") {
                return Err(ParseError::Syntax("5.5.4 invalid BODY parameter"));
            }
        } else if key.eq_ignore_ascii_case("SMTPUTF8") {
            if !value.is_empty() {
                return Err(ParseError::Syntax("5.5.4 SMTPUTF8 takes no value"));
            }
        } else {
            return Err(ParseError::UnsupportedParameter);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: u64 = 1000;

    fn ok(line: &str) -> Command<'_> {
        parse(line.as_bytes(), MAX).unwrap()
    }

    fn err(line: &str) -> u16 {
        parse(line.as_bytes(), MAX).unwrap_err().reply().0
    }

    #[test]
    fn greetings_are_case_insensitive() {
        assert_eq!(
            ok("EHLO client.example"),
            Command::Ehlo {
                domain: "client.example"
            }
        );
        assert_eq!(
            ok("ehlo  client.example "),
            Command::Ehlo {
                domain: "client.example"
            }
        );
        assert_eq!(
            ok("HeLo [127.0.0.1]"),
            Command::Helo {
                domain: "[127.0.0.1]"
            }
        );
        assert_eq!(err("EHLO"), 501);
    }

    #[test]
    fn mail_from_with_parameters() {
        assert_eq!(
            ok("MAIL FROM:<a@example.com>"),
            Command::Mail {
                from: "a@example.com"
            }
        );
        assert_eq!(
            ok("mail from:<a@example.com> SIZE=999 BODY=8BITMIME SMTPUTF8"),
            Command::Mail {
                from: "a@example.com"
            }
        );
        assert_eq!(
            ok("MAIL FROM: <a@example.com>"),
            Command::Mail {
                from: "a@example.com"
            }
        );
        assert_eq!(ok("MAIL FROM:<>"), Command::Mail { from: "" });
        assert_eq!(
            ok("MAIL FROM:a@example.com"),
            Command::Mail {
                from: "a@example.com"
            }
        );
        assert_eq!(
            ok("MAIL FROM:<@relay.example:a@example.com>"),
            Command::Mail {
                from: "a@example.com"
            }
        );
        assert_eq!(
            ok("MAIL FROM:<\"odd >name\"@example.com>"),
            Command::Mail {
                from: "\"odd >name\"@example.com"
            }
        );
    }

    #[test]
    fn mail_from_refusals() {
        assert_eq!(err("MAIL <a@example.com>"), 501);
        assert_eq!(err("MAIL FROM:<a@example.com"), 501);
        assert_eq!(err("MAIL FROM:<a@example.com>SIZE=1"), 501);
        assert_eq!(err("MAIL FROM:<a@example.com> SIZE=abc"), 501);
        assert_eq!(err("MAIL FROM:<a@example.com> BODY=BINARYMIME"), 501);
        assert_eq!(err("MAIL FROM:<a@example.com> SIZE=1001"), 552);
        assert_eq!(err("MAIL FROM:<a@example.com> RET=HDRS"), 555);
    }

    #[test]
    fn rcpt_to() {
        assert_eq!(
            ok("RCPT TO:<b@example.com>"),
            Command::Rcpt {
                to: "b@example.com"
            }
        );
        assert_eq!(
            ok("rcpt to:<Postmaster>"),
            Command::Rcpt { to: "Postmaster" }
        );
        assert_eq!(err("RCPT TO:<>"), 501);
        assert_eq!(err("RCPT FROM:<b@example.com>"), 501);
        assert_eq!(err("RCPT TO:<b@example.com> NOTIFY=NEVER"), 555);
    }

    #[test]
    fn simple_commands() {
        assert_eq!(ok("DATA"), Command::Data);
        assert_eq!(ok("rset"), Command::Rset);
        assert_eq!(ok("NOOP anything"), Command::Noop);
        assert_eq!(ok("VRFY someone"), Command::Vrfy);
        assert_eq!(ok("HELP"), Command::Help);
        assert_eq!(ok("QUIT"), Command::Quit);
        assert_eq!(ok("starttls"), Command::StartTls);
        assert_eq!(ok("EXPN list"), Command::NotImplemented);
        assert_eq!(err("STARTTLS now"), 501);
        assert_eq!(err("DATA now"), 501);
        assert_eq!(err("VRFY"), 501);
    }

    #[test]
    fn auth_with_and_without_initial_response() {
        assert_eq!(
            ok("AUTH PLAIN AGFAYg=="),
            Command::Auth {
                mechanism: "PLAIN",
                initial_response: Some("AGFAYg==")
            }
        );
        assert_eq!(
            ok("auth login"),
            Command::Auth {
                mechanism: "login",
                initial_response: None
            }
        );
        assert_eq!(err("AUTH"), 501);
        assert_eq!(err("AUTH PLAIN a b"), 501);
    }

    #[test]
    fn unknown_and_invalid() {
        assert_eq!(err("BDAT 10 LAST"), 500);
        assert_eq!(err(""), 500);
        assert_eq!(parse(b"MAIL FROM:<\xff>", MAX).unwrap_err().reply().0, 501);
    }
}
