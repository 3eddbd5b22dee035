//! Assembly of a message from the lines after `DATA`: end detection, dot-unstuffing and the
//! size limit (RFC 5321 section 4.5.2), free of I/O.

/// Whether the message continues after a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Progress {
    More,
    End,
}

/// Why a completely received message is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    TooLarge,
    LineTooLong,
}

/// Collects the content of one message, line by line.
#[derive(Debug)]
pub(crate) struct MessageBuffer {
    content: Vec<u8>,
    max_size: usize,
    refusal: Option<Refusal>,
}

impl MessageBuffer {
    /// Starts an empty message that may grow to `max_size` bytes.
    pub fn new(max_size: usize) -> Self {
        Self {
            content: Vec::new(),
            max_size,
            refusal: None,
        }
    }

    /// Adds one line, including its line terminator, and tells whether it ended the message.
    pub fn push_line(&mut self, line: &[u8]) -> Progress {
        // A bare LF terminator is accepted as well: lenient, like most real servers.
        if line == b".\r\n" || line == b".\n" {
            return Progress::End;
        }
        if self.refusal.is_some() {
            // Keep reading to the end of the message so the session stays in sync, but keep
            // nothing: the reply after the final dot refuses it.
            return Progress::More;
        }
        let line = unstuff(line);
        if self.content.len() + line.len() > self.max_size {
            self.refuse(Refusal::TooLarge);
        } else {
            self.content.extend_from_slice(line);
        }
        Progress::More
    }

    /// Records that a line was cut off because it exceeded the line length limit.
    pub fn line_too_long(&mut self) {
        if self.refusal.is_none() {
            self.refuse(Refusal::LineTooLong);
        }
    }

    /// Returns the message content, or why it is refused.
    pub fn finish(self) -> Result<Vec<u8>, Refusal> {
        match self.refusal {
            Some(refusal) => Err(refusal),
            None => Ok(self.content),
        }
    }

    fn refuse(&mut self, refusal: Refusal) {
        self.refusal = Some(refusal);
        self.content = Vec::new();
    }
}

/// Removes the leading dot a client adds to every line that starts with one.
fn unstuff(line: &[u8]) -> &[u8] {
    line.strip_prefix(b".").unwrap_or(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(lines: &[&[u8]], max_size: usize) -> (Result<Vec<u8>, Refusal>, usize) {
        let mut buffer = MessageBuffer::new(max_size);
        for (index, line) in lines.iter().enumerate() {
            if buffer.push_line(line) == Progress::End {
                return (buffer.finish(), index);
            }
        }
        panic!("message did not end");
    }

    #[test]
    fn undoes_dot_stuffing() {
        let lines: &[&[u8]] = &[
            b"Subject: dots\r\n",
            b"\r\n",
            b"..hidden\r\n",
            b"...\r\n",
            b"a.b\r\n",
            b".\r\n",
        ];
        let (content, end) = collect(lines, 1000);
        assert_eq!(
            content.unwrap(),
            b"Subject: dots\r\n\r\n.hidden\r\n..\r\na.b\r\n"
        );
        assert_eq!(end, 5);
    }

    #[test]
    fn dot_with_text_is_not_the_end() {
        let lines: &[&[u8]] = &[b". \r\n", b".x\r\n", b".\n"];
        let (content, end) = collect(lines, 1000);
        assert_eq!(content.unwrap(), b" \r\nx\r\n");
        assert_eq!(end, 2);
    }

    #[test]
    fn empty_message() {
        let (content, _) = collect(&[b".\r\n"], 1000);
        assert_eq!(content.unwrap(), b"");
    }

    #[test]
    fn refuses_oversized_message_after_its_end() {
        let lines: &[&[u8]] = &[b"12345\r\n", b"67890\r\n", b"more\r\n", b".\r\n"];
        let (content, end) = collect(lines, 10);
        assert_eq!(content, Err(Refusal::TooLarge));
        assert_eq!(end, 3);
    }

    #[test]
    fn size_limit_is_inclusive() {
        let (content, _) = collect(&[b"12345678\r\n", b".\r\n"], 10);
        assert_eq!(content.unwrap().len(), 10);
    }

    #[test]
    fn refuses_message_with_overlong_line() {
        let mut buffer = MessageBuffer::new(1000);
        buffer.push_line(b"start\r\n");
        buffer.line_too_long();
        buffer.push_line(b"rest\r\n");
        assert_eq!(buffer.push_line(b".\r\n"), Progress::End);
        assert_eq!(buffer.finish(), Err(Refusal::LineTooLong));
    }
}
