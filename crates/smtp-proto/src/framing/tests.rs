use super::*;

/// Every frame `input` yields with limit `max`, lines as strings.
fn frames(input: &[u8], max: usize) -> Vec<String> {
    let mut inp = Input::default();
    inp.feed(input);
    let mut out = Vec::new();
    loop {
        match inp.next_line(max) {
            Frame::Incomplete => return out,
            Frame::Line(r) => out.push(String::from_utf8_lossy(inp.get(r)).into_owned()),
            other => out.push(format!("{other:?}")),
        }
    }
}

#[test]
fn lines_and_line_errors() {
    assert_eq!(frames(b"EHLO a\r\nNOOP\r\n\r\npartial", 100), ["EHLO a", "NOOP", ""]);
    assert_eq!(frames(b"A\nB\r\n", 100), ["BareLf", "B"]);
    assert_eq!(frames(b"\nB\r\n", 100), ["BareLf", "B"]);
    assert_eq!(frames(b"A\rB\r\nC\r\r\n", 100), ["BareCr", "BareCr"]);
}

#[test]
fn line_limit_at_and_past_the_edge() {
    // 8 octets + CRLF = 10 = the limit.
    assert_eq!(frames(b"12345678\r\nX\r\n", 10), ["12345678", "X"]);
    assert_eq!(frames(b"123456789\r\nX\r\n", 10), ["TooLong", "X"]);
    assert_eq!(frames(b"1234567890123\r\nX\r\n", 10), ["TooLong", "X"]);
}

#[test]
fn over_long_line_is_dropped_while_it_arrives() {
    let mut inp = Input::default();
    for _ in 0..10_000 {
        inp.feed(&[b'x'; 100]);
        assert_eq!(inp.next_line(512), Frame::Incomplete);
        assert!(inp.buffered() <= 612, "{}", inp.buffered());
    }
    inp.feed(b"yyy\r\nNOOP\r\n");
    assert_eq!(inp.next_line(512), Frame::TooLong);
    assert_eq!(inp.next_line(512), Frame::Line(5..9));
    assert_eq!(inp.get(5..9), b"NOOP");
}

#[test]
fn byte_at_a_time_lines() {
    let mut inp = Input::default();
    let mut lines = Vec::new();
    for &b in b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n" {
        inp.feed(&[b]);
        while let Frame::Line(r) = inp.next_line(100) {
            lines.push(String::from_utf8_lossy(inp.get(r)).into_owned());
        }
    }
    assert_eq!(lines, ["MAIL FROM:<a@b>", "RCPT TO:<c@d>"]);
}

#[test]
fn take_and_rest() {
    let mut inp = Input::default();
    inp.feed(b"abcdef");
    assert_eq!(inp.take(2), b"ab");
    assert_eq!(inp.rest(), b"cdef");
    assert_eq!(inp.take(100), b"cdef");
    assert_eq!(inp.take(1), b"");
    inp.feed(b"X\r\n");
    assert_eq!(inp.next_line(10), Frame::Line(0..1));
}

/// Runs a DotReader over `input`; returns the outcome and the bytes left.
fn read(input: &[u8], max_line: usize, max_size: u64) -> (Option<Result<Vec<u8>, DataError>>, Vec<u8>) {
    let mut r = DotReader::new(max_line, max_size);
    let (used, done) = r.push(input);
    let rest = input.get(used..).unwrap_or_default().to_vec();
    (done.then(|| r.finish()), rest)
}

#[test]
fn end_of_data_and_unstuffing() {
    let (res, rest) = read(b"Subject: x\r\n\r\n..dot\r\n.\r\nQUIT\r\n", 1000, 0);
    assert_eq!(res, Some(Ok(b"Subject: x\r\n\r\n.dot\r\n".to_vec())));
    assert_eq!(rest, b"QUIT\r\n");
    // The end line may be the very first line (DATA's CRLF precedes it).
    assert_eq!(read(b".\r\n", 1000, 0).0, Some(Ok(Vec::new())));
    // "." followed by other text is not the end; the dot is removed.
    assert_eq!(read(b".x\r\n.\r\n", 1000, 0).0, Some(Ok(b"x\r\n".to_vec())));
    assert_eq!(read(b"..\r\n.\r\n", 1000, 0).0, Some(Ok(b".\r\n".to_vec())));
    assert_eq!(read(b"a.\r\n.\r\n", 1000, 0).0, Some(Ok(b"a.\r\n".to_vec())));
    // Not finished yet.
    assert_eq!(read(b"abc\r\n.", 1000, 0).0, None);
    assert_eq!(read(b"abc\r\n.\r", 1000, 0).0, None);
}

#[test]
fn smuggling_forms_are_refused_and_not_ends() {
    for form in [&b"\n.\n"[..], b"\r.\n", b"\n.\r\n", b"\r.\r\n", b"\r\n.\n", b"\r\n.\r"] {
        let mut input = b"Subject: x\r\n\r\nbody".to_vec();
        input.extend_from_slice(form);
        input.extend_from_slice(b"MAIL FROM:<evil@x>\r\nRCPT TO:<v@x>\r\nDATA\r\n\r\n.\r\nNOOP\r\n");
        let (res, rest) = read(&input, 1000, 0);
        assert_eq!(res, Some(Err(DataError::BareCrLf)), "{form:?}");
        assert_eq!(rest, b"NOOP\r\n", "{form:?}");
    }
    for bad in
        [&b"a\nb\r\n.\r\n"[..], b"a\rb\r\n.\r\n", b"a\r\r\n.\r\n", b"\n.\r\n.\r\n", b".\n.\r\n.\r\n", b".\r.\r\n.\r\n"]
    {
        assert_eq!(read(bad, 1000, 0).0, Some(Err(DataError::BareCrLf)), "{bad:?}");
    }
}

#[test]
fn data_line_limit_at_and_past_the_edge() {
    // 8 + CRLF = 10 octets.
    assert_eq!(read(b"12345678\r\n.\r\n", 10, 0).0, Some(Ok(b"12345678\r\n".to_vec())));
    assert_eq!(read(b"123456789\r\n.\r\n", 10, 0).0, Some(Err(DataError::LineTooLong)));
    // Counted before unstuffing: a stuffed dot counts.
    assert_eq!(read(b"..2345678\r\n.\r\n", 10, 0).0, Some(Err(DataError::LineTooLong)));
    assert_eq!(read(b".2345678\r\n.\r\n", 10, 0).0, Some(Ok(b"2345678\r\n".to_vec())));
}

#[test]
fn size_limit_at_and_past_the_edge() {
    // 10 octets stored: "12345678\r\n".
    assert_eq!(read(b"12345678\r\n.\r\n", 1000, 10).0, Some(Ok(b"12345678\r\n".to_vec())));
    assert_eq!(read(b"123456789\r\n.\r\n", 1000, 10).0, Some(Err(DataError::TooBig)));
    // Measured after unstuffing.
    assert_eq!(read(b"..2345678\r\n.\r\n", 1000, 10).0, Some(Ok(b".2345678\r\n".to_vec())));
}

#[test]
fn first_error_wins_and_nothing_is_kept() {
    let mut r = DotReader::new(10, 5);
    let (_, done) = r.push(b"123456\r\n");
    assert!(!done);
    assert_eq!(r.stored(), 0);
    let (_, done) = r.push(b"a\nlong line long line\r\n.\r\n");
    assert!(done);
    assert_eq!(r.finish(), Err(DataError::TooBig));
}

#[test]
fn every_split_gives_the_same_result() {
    let input = b"a\r\n..b\r\n.c\r\n\r\n.\r\nTAIL";
    let (whole, rest) = read(input, 1000, 0);
    for k in 0..=input.len() {
        let mut r = DotReader::new(1000, 0);
        let (head, tail) = input.split_at(k);
        let (used, done) = r.push(head);
        let consumed = if done {
            used
        } else {
            assert_eq!(used, head.len());
            let (used2, done2) = r.push(tail);
            assert!(done2);
            used + used2
        };
        assert_eq!(Some(r.finish()), whole, "split at {k}");
        assert_eq!(&input[consumed..], &rest[..], "split at {k}");
    }
}
