//! Address fields (From, To, Cc, ...) read as RFC 5322 §3.4 writes them,
//! for ENVELOPE's address structures (RFC 9051 §7.5.2) and the SEARCH
//! keys FROM, TO, CC and BCC (§6.4.4).
//!
//! Pure, and lenient the way mail readers are: comments (CFWS, §3.2.2)
//! are set aside, not read as names or addresses; a group holding only a
//! comment is empty (`undisclosed-recipients: (none);`); an obsolete source
//! route (§4.4 obs-route, `<@relay,@hub:user@host>`) is kept apart from the
//! mailbox. A mailbox without a display name takes a comment written after
//! it as the name (`user@host (Name)`), as Dovecot shows and sorts it.

/// One element of an address list, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// `name:` opens a group (§3.4).
    GroupStart(String),
    Mailbox(Mailbox),
    /// `;` closes the group.
    GroupEnd,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mailbox {
    /// The display name, encoded words decoded (RFC 2047), or when there is
    /// none a comment after the address (`user@host (Name)`).
    pub name: Option<String>,
    /// The source route, `@relay.example,@hub.example` (RFC 9051 §7.5.2 adl).
    pub route: Option<String>,
    pub local: String,
    /// Empty when the address has none (`Bcc: nodomain`).
    pub domain: String,
}

impl Mailbox {
    /// `local@domain`, or the local part alone without a domain.
    pub fn addr_spec(&self) -> String {
        if self.domain.is_empty() { self.local.clone() } else { format!("{}@{}", self.local, self.domain) }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// An atom, or a quoted string's content (`quoted`).
    Word {
        text: String,
        quoted: bool,
    },
    /// One of `< > @ , ; : .`.
    Special(u8),
    Comment(String),
    /// `[1.2.3.4]`, brackets kept.
    Literal(String),
}

fn tokens(value: &[u8]) -> Vec<Token> {
    let text = String::from_utf8_lossy(value);
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            // Whitespace, and a `)` that closes nothing.
            c if c.is_whitespace() || c == ')' => {}
            '(' => {
                let (mut depth, mut comment) = (1usize, String::new());
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => comment.extend(chars.next()),
                        // Comments nest (§3.2.2); counted, not recursed into.
                        '(' => {
                            depth += 1;
                            comment.push(c);
                        }
                        ')' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                            comment.push(c);
                        }
                        c => comment.push(c),
                    }
                }
                out.push(Token::Comment(comment.split_whitespace().collect::<Vec<_>>().join(" ")));
            }
            '"' => {
                let mut word = String::new();
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => word.extend(chars.next()),
                        '"' => break,
                        c => word.push(c),
                    }
                }
                out.push(Token::Word { text: word, quoted: true });
            }
            '[' => {
                let mut literal = String::from('[');
                for c in chars.by_ref() {
                    literal.push(c);
                    if c == ']' {
                        break;
                    }
                }
                out.push(Token::Literal(literal));
            }
            '<' | '>' | '@' | ',' | ';' | ':' | '.' => out.push(Token::Special(c as u8)),
            c => {
                let mut word = String::from(c);
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() || "()<>@,;:.\"[".contains(c) {
                        break;
                    }
                    word.push(c);
                    chars.next();
                }
                out.push(Token::Word { text: word, quoted: false });
            }
        }
    }
    out
}

/// Parse an address field's value (unfolded or not).
pub fn parse(value: &[u8]) -> Vec<Item> {
    let tokens = tokens(value);
    let mut out = Vec::new();
    let mut current: Vec<&Token> = Vec::new();
    let (mut in_group, mut in_angle) = (false, false);
    for token in &tokens {
        match token {
            Token::Special(b'<') => in_angle = true,
            Token::Special(b'>') => in_angle = false,
            _ => {}
        }
        match token {
            // `phrase:` opens a group unless it is a route's colon (inside
            // <>) or comes after an address has begun.
            Token::Special(b':')
                if !in_angle
                    && !in_group
                    && !current.iter().any(|t| matches!(t, Token::Special(b'@') | Token::Special(b'<'))) =>
            {
                out.push(Item::GroupStart(phrase(&current).unwrap_or_default()));
                current.clear();
                in_group = true;
            }
            Token::Special(b',') if !in_angle => out.extend(mailbox(&std::mem::take(&mut current)).map(Item::Mailbox)),
            Token::Special(b';') if !in_angle && in_group => {
                out.extend(mailbox(&std::mem::take(&mut current)).map(Item::Mailbox));
                out.push(Item::GroupEnd);
                in_group = false;
            }
            t => current.push(t),
        }
    }
    out.extend(mailbox(&current).map(Item::Mailbox));
    if in_group {
        // An unclosed group is closed at the end of the field.
        out.push(Item::GroupEnd);
    }
    out
}

/// The display name of a phrase: its words (quoted strings unquoted),
/// separated by one space, encoded words decoded; comments left out.
fn phrase(tokens: &[&Token]) -> Option<String> {
    let mut words: Vec<String> = Vec::new();
    for t in tokens {
        match t {
            Token::Word { text, .. } => words.push(text.clone()),
            // obs-phrase (§4.1): `John Q. Public`, the dot kept on its word.
            Token::Special(b'.') => match words.last_mut() {
                Some(w) => w.push('.'),
                None => words.push(".".into()),
            },
            _ => {}
        }
    }
    let joined = words.join(" ").trim().to_string();
    (!joined.is_empty()).then(|| decode_words(&joined))
}

/// Decode RFC 2047 encoded words in a display name.
fn decode_words(s: &str) -> String {
    if !s.contains("=?") {
        return s.to_string();
    }
    let mut raw = s.as_bytes().to_vec();
    // The parser takes a value to its line end.
    raw.push(b'\n');
    let decoded = mail_parser::parsers::MessageStream::new(&raw).parse_unstructured().into_text().map(String::from);
    decoded.unwrap_or_else(|| s.to_string())
}

/// One mailbox from its tokens; `None` for nothing but comments.
fn mailbox(tokens: &[&Token]) -> Option<Mailbox> {
    // The old `user@host (Name)` form: a comment after the address.
    let last_comment = tokens.iter().rev().map_while(|t| match t {
        Token::Comment(c) => Some(c),
        _ => None,
    });
    let last_comment = last_comment.filter(|c| !c.is_empty()).last().cloned();
    let spec: Vec<&Token> = tokens.iter().copied().filter(|t| !matches!(t, Token::Comment(_))).collect();
    if spec.is_empty() {
        return None;
    }
    let (name, inside) = match spec.iter().position(|t| **t == Token::Special(b'<')) {
        Some(open) => {
            let close = spec.iter().position(|t| **t == Token::Special(b'>')).unwrap_or(spec.len());
            (phrase(&spec[..open]), &spec[(open + 1).min(close)..close])
        }
        None => (None, &spec[..]),
    };
    // obs-route: `@a,@b:` before the addr-spec inside the brackets.
    let (route, addr) = match inside.iter().position(|t| **t == Token::Special(b':')) {
        Some(colon) if inside.first() == Some(&&Token::Special(b'@')) => {
            (Some(render(&inside[..colon])), &inside[colon + 1..])
        }
        _ => (None, inside),
    };
    let (local, domain) = match addr.iter().rposition(|t| **t == Token::Special(b'@')) {
        Some(at) => (render(&addr[..at]), render(&addr[at + 1..])),
        None => (render(addr), String::new()),
    };
    if local.is_empty() && domain.is_empty() && name.is_none() {
        return None;
    }
    Some(Mailbox { name: name.or(last_comment), route, local, domain })
}

/// Tokens of an addr-spec or route written back without spaces.
fn render(tokens: &[&Token]) -> String {
    let mut out = String::new();
    for t in tokens {
        match t {
            Token::Word { text, .. } | Token::Comment(text) | Token::Literal(text) => out.push_str(text),
            Token::Special(c) => out.push(*c as char),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mb(name: Option<&str>, route: Option<&str>, local: &str, domain: &str) -> Item {
        Item::Mailbox(Mailbox {
            name: name.map(String::from),
            route: route.map(String::from),
            local: local.into(),
            domain: domain.into(),
        })
    }

    #[test]
    fn plain_named_and_commented_mailboxes() {
        assert_eq!(parse(b"a@b.example"), [mb(None, None, "a", "b.example")]);
        assert_eq!(parse(b"Fred Foo <fred@b.example>"), [mb(Some("Fred Foo"), None, "fred", "b.example")]);
        assert_eq!(parse(b"x@y.example (Comment)"), [(mb(Some("Comment"), None, "x", "y.example"))]);
        assert_eq!(parse(b"\"Q (not) \" (c) <q@r.example>"), [mb(Some("Q (not)"), None, "q", "r.example")]);
        assert_eq!(
            parse(b"(c1) k (c2) @ (c3) l . example (c4)"),
            [(mb(Some("c4"), None, "k", "l.example"))],
            "comments anywhere in an addr-spec (RFC 5322 §3.4.1 CFWS)"
        );
        assert_eq!(parse(b"John Q. Public <jqp@b.example>"), [mb(Some("John Q. Public"), None, "jqp", "b.example")]);
        assert_eq!(parse(b"=?UTF-8?Q?J=C3=B6rg?= <j@b.example>"), [mb(Some("Jörg"), None, "j", "b.example")]);
        assert_eq!(parse(b"\"a b\"@c.example"), [mb(None, None, "a b", "c.example")]);
        assert_eq!(parse(b"u@[192.0.2.1]"), [mb(None, None, "u", "[192.0.2.1]")]);
        assert_eq!(parse(b"nodomain"), [mb(None, None, "nodomain", "")]);
        assert_eq!(parse(b"(c) k@x.example"), [mb(None, None, "k", "x.example")], "a comment before is no name");
        assert_eq!(parse(b"k@x.example (one) (two)"), [mb(Some("one"), None, "k", "x.example")], "the first after it");
        assert_eq!(parse(b"(only a comment)"), []);
        assert_eq!(parse(b""), []);
    }

    #[test]
    fn lists_groups_and_routes() {
        assert_eq!(
            parse(b"a@b.example, \"C, D\" <c@d.example>,, e@f.example"),
            [
                mb(None, None, "a", "b.example"),
                mb(Some("C, D"), None, "c", "d.example"),
                mb(None, None, "e", "f.example")
            ]
        );
        assert_eq!(
            parse(b"undisclosed-recipients: (none);"),
            [Item::GroupStart("undisclosed-recipients".into()), Item::GroupEnd],
            "a group with only a comment is empty"
        );
        assert_eq!(
            parse(b"g: a@b.example (A), c@d.example;, x@y.example"),
            [
                Item::GroupStart("g".into()),
                (mb(Some("A"), None, "a", "b.example")),
                mb(None, None, "c", "d.example"),
                Item::GroupEnd,
                mb(None, None, "x", "y.example"),
            ]
        );
        assert_eq!(
            parse(b"open: a@b.example"),
            [Item::GroupStart("open".into()), mb(None, None, "a", "b.example"), Item::GroupEnd]
        );
        assert_eq!(
            parse(b"Joe <@relay.example,@hub.example:joe@b.example>"),
            [mb(Some("Joe"), Some("@relay.example,@hub.example"), "joe", "b.example")]
        );
    }

    #[test]
    fn hostile_input_ends() {
        for raw in [&b"((((((((((("[..], b"\"unterminated", b"<a@b", b"a@b>", b"[1.2", b"\\", b":;:;,<>@@.."] {
            let _ = parse(raw);
        }
        let deep = "(".repeat(10_000) + "x" + &")".repeat(10_000) + " a@b.example";
        let parsed = parse(deep.as_bytes());
        assert!(matches!(&parsed[..], [Item::Mailbox(m)] if m.addr_spec() == "a@b.example"), "{:?}", parsed.len());
        assert_eq!(parse(b") a@b.example"), [mb(None, None, "a", "b.example")]);
    }
}
