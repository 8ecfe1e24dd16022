//! The IMAP4rev2 command forms `imap-codec` does not parse yet: SEARCH with
//! `RETURN (...)` (RFC 9051 §6.4.4, RFC 4731 ESEARCH), LIST with
//! selection and return options (RFC 9051 §6.3.9, RFC 5258, RFC 6154), and
//! `$`, the saved search result (RFC 9051 §6.4.4.1, RFC 5182 SEARCHRES), as
//! the message set of FETCH, STORE, COPY, MOVE and UID EXPUNGE or as the
//! first search key.
//!
//! Pure: the options are taken out of the command's first line, the rest is
//! the plain command the codec knows, and the options travel beside it.

/// What SEARCH ... RETURN asked for (RFC 9051 §6.4.4.1, RFC 5267 §4).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchReturn {
    pub min: bool,
    pub max: bool,
    pub all: bool,
    pub count: bool,
    pub save: bool,
    /// `PARTIAL low:high` (RFC 5267 §4.4): the results at these positions
    /// (1-based, low ≤ high).
    pub partial: Option<(u32, u32)>,
    /// `UPDATE` (RFC 5267 §4.3): keep the result and tell its changes.
    pub update: bool,
}

impl SearchReturn {
    /// `RETURN ()` means ALL (RFC 9051 §6.4.4.1); so does `RETURN
    /// (CONTEXT)`, CONTEXT being a hint only (RFC 5267 §4.2). UPDATE alone
    /// returns nothing now, as Dovecot answers.
    fn normalized(mut self) -> Self {
        if !(self.min || self.max || self.all || self.count || self.save || self.update) && self.partial.is_none() {
            self.all = true;
        }
        self
    }
}

/// `n:m` of PARTIAL (RFC 5267 §5 `partial-range`, nz-numbers; `m:n` is the
/// same range).
fn partial_range(s: &str) -> Option<(u32, u32)> {
    let (a, b) = s.split_once(':')?;
    let n = |x: &str| x.bytes().all(|c| c.is_ascii_digit()).then(|| x.parse::<u32>().ok()).flatten().filter(|&v| v > 0);
    let (a, b) = (n(a)?, n(b)?);
    Some((a.min(b), a.max(b)))
}

/// LIST selection and return options (RFC 5258 §3, RFC 6154 §2).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListOptions {
    pub select_subscribed: bool,
    pub select_special_use: bool,
    pub recursive_match: bool,
    pub return_subscribed: bool,
    pub return_children: bool,
    pub return_special_use: bool,
    pub return_status: Option<String>,
    /// `LIST ref (pat1 pat2 ...)` (RFC 5258 §3): every pattern, as sent
    /// (quotes and escapes removed); empty for the one-pattern form.
    pub patterns: Vec<Vec<u8>>,
}

/// Most patterns one LIST may give (each costs a pass over the names).
pub const MAX_LIST_PATTERNS: usize = 32;

/// One astring or list-mailbox at the start of `s` (a quoted string with
/// its escapes resolved, or the characters up to a space): it and the rest.
pub(crate) fn astring(s: &str) -> Option<(Vec<u8>, &str)> {
    if let Some(quoted) = s.strip_prefix('"') {
        let mut out = Vec::new();
        let mut chars = quoted.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => out.extend_from_slice(chars.next()?.1.to_string().as_bytes()),
                '"' => return Some((out, &quoted[i + 1..])),
                c => out.extend_from_slice(c.to_string().as_bytes()),
            }
        }
        return None;
    }
    let end = s.find([' ', ')']).unwrap_or(s.len());
    (end > 0).then(|| (s.as_bytes()[..end].to_vec(), &s[end..]))
}

/// A pattern as a quoted string for the codec's one-pattern LIST.
fn quoted(p: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(p).ok()?;
    Some(format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\"")))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Extension {
    Search(SearchReturn),
    List(ListOptions),
    /// The command used `$`: its message set (replaced by `1` for the
    /// codec) or its first search key (replaced by `ALL`) is the saved
    /// result; a SEARCH also carries its RETURN options, if any.
    Saved(Option<SearchReturn>),
    /// `CREATE name (USE (attrs))` (RFC 6154 §3): the special-use
    /// attributes asked for, as written.
    CreateUse(Vec<String>),
    /// MULTIAPPEND (RFC 3502) and CATENATE (RFC 4469). The codec reads
    /// the first message as a plain APPEND; if it is catenated, its literal
    /// is empty there and `first` holds its parts. `rest` holds the
    /// messages after the first.
    Append {
        first: Option<Vec<CatPart>>,
        rest: Vec<AppendPart>,
    },
    /// `CANCELUPDATE "tag" …` (RFC 5267 §4.3.5), read by the codec as NOOP:
    /// the tags whose updates end.
    CancelUpdate(Vec<String>),
    /// `NOTIFY …` (RFC 5465), read by the codec as NOOP.
    Notify(crate::notify::Notify),
}

/// One message of an APPEND: its flags and date as written, its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendPart {
    pub flags: Vec<String>,
    pub date: Option<String>,
    pub data: Vec<CatPart>,
}

/// A piece of a message: octets sent, or a part of a stored message an
/// IMAP URL names (RFC 4469 §3). A plain APPEND's message is one `Text`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CatPart {
    Text(Vec<u8>),
    Url(String),
}

/// Most parts one CATENATE may join; past it the command is BAD.
pub const MAX_CATENATE_PARTS: usize = 256;

/// The `(MIN MAX ALL COUNT [SAVE])` after RETURN of SEARCH (RFC 4731,
/// RFC 5182) or SORT (RFC 5267 §3, no SAVE), and what follows it; `None`
/// for an option not taken (the codec then answers BAD).
fn return_options(options: &str, save: bool) -> Option<(SearchReturn, &str)> {
    let (inside, rest) = paren(options.trim_start())?;
    let mut r = SearchReturn::default();
    let mut words = words(inside).into_iter();
    while let Some(w) = words.next() {
        match w.as_str() {
            "MIN" => r.min = true,
            "MAX" => r.max = true,
            "ALL" => r.all = true,
            "COUNT" => r.count = true,
            "SAVE" if save => r.save = true,
            "PARTIAL" if r.partial.is_none() => r.partial = Some(partial_range(&words.next()?)?),
            "UPDATE" => r.update = true,
            "CONTEXT" => {}
            _ => return None,
        }
    }
    // RFC 5267 §4.4: one PARTIAL or one ALL, not both.
    if r.all && r.partial.is_some() {
        return None;
    }
    Some((r.normalized(), rest.trim_start()))
}

/// `tag APPEND mailbox {SP [flags] [date] message}` where a message is a
/// literal (`{n}`, `{n+}` or `~{n}`) or `CATENATE (parts)` (RFC 4469 §5),
/// with several messages (MULTIAPPEND, RFC 3502 §6.3.11) or at least one
/// CATENATE: the first as a plain APPEND (its literal empty if catenated),
/// the rest aside. The mailbox must be an atom or a quoted string.
fn append(message: &[u8]) -> Option<(Vec<u8>, Extension)> {
    let mut at = message.iter().position(|&b| b == b' ')? + 1;
    let verb = b"APPEND ";
    if !message.get(at..at + verb.len())?.eq_ignore_ascii_case(verb) {
        return None;
    }
    at += verb.len();
    // The mailbox.
    if message.get(at) == Some(&b'"') {
        at += 1;
        loop {
            match *message.get(at)? {
                b'\\' => at += 2,
                b'"' => break,
                _ => at += 1,
            }
        }
        at += 1;
    } else {
        while !matches!(message.get(at)?, b' ' | b'{' | b'\r') {
            at += 1;
        }
    }
    let mut plain = None;
    let mut first = None;
    let mut rest = Vec::new();
    while message.get(at) == Some(&b' ') {
        at += 1;
        let mut flags = Vec::new();
        if message.get(at) == Some(&b'(') {
            let close = at + message[at..].iter().position(|&b| b == b')')?;
            let inside = std::str::from_utf8(&message[at + 1..close]).ok()?;
            flags = inside.split_ascii_whitespace().map(String::from).collect();
            at = close + 1;
            if message.get(at) == Some(&b' ') {
                at += 1;
            }
        }
        let mut date = None;
        if message.get(at) == Some(&b'"') {
            let close = at + 1 + message[at + 1..].iter().position(|&b| b == b'"')?;
            date = Some(std::str::from_utf8(&message[at + 1..close]).ok()?.to_string());
            at = close + 1;
            if message.get(at) == Some(&b' ') {
                at += 1;
            }
        }
        let data_at = at;
        let catenated = message.get(at..at + 10).is_some_and(|w| w.eq_ignore_ascii_case(b"CATENATE ("));
        let data = if catenated {
            let (cat, end) = catenate(message, at + 10)?;
            at = end;
            cat
        } else {
            let (text, end) = literal(message, at)?;
            at = end;
            vec![CatPart::Text(text)]
        };
        if plain.is_some() {
            rest.push(AppendPart { flags, date, data });
            continue;
        }
        // The first message stays in the command the codec reads, with an
        // empty literal if it is catenated.
        let mut p = message[..data_at].to_vec();
        if catenated {
            p.extend_from_slice(b"{0}\r\n");
            first = Some(data);
        } else {
            p.extend_from_slice(&message[data_at..at]);
        }
        p.extend_from_slice(b"\r\n");
        plain = Some(p);
    }
    if message.get(at..)? != b"\r\n" || (first.is_none() && rest.is_empty()) {
        return None;
    }
    Some((plain?, Extension::Append { first, rest }))
}

/// A literal (`{n}`, `{n+}`, `~{n}`) at `at`: its octets and where the
/// command goes on.
fn literal(message: &[u8], mut at: usize) -> Option<(Vec<u8>, usize)> {
    if message.get(at) == Some(&b'~') {
        at += 1;
    }
    if message.get(at) != Some(&b'{') {
        return None;
    }
    let close = at + message[at..].iter().position(|&b| b == b'}')?;
    let digits = std::str::from_utf8(&message[at + 1..close]).ok()?;
    let len: usize = digits.strip_suffix('+').unwrap_or(digits).parse().ok()?;
    if message.get(close + 1..close + 3)? != b"\r\n" {
        return None;
    }
    let start = close + 3;
    let end = start.checked_add(len)?;
    Some((message.get(start..end)?.to_vec(), end))
}

/// The parts of `CATENATE (` from `at` to its `)` (RFC 4469 §5):
/// `TEXT literal` or `URL astring`; they and where the command goes on.
fn catenate(message: &[u8], mut at: usize) -> Option<(Vec<CatPart>, usize)> {
    let mut parts = Vec::new();
    loop {
        match message.get(at)? {
            b')' if !parts.is_empty() => return Some((parts, at + 1)),
            b' ' if !parts.is_empty() => at += 1,
            _ if parts.is_empty() => {}
            _ => return None,
        }
        let word = message.get(at..at + 4)?;
        if word.eq_ignore_ascii_case(b"TEXT") && message.get(at + 4) == Some(&b' ') {
            let (text, end) = literal(message, at + 5)?;
            parts.push(CatPart::Text(text));
            at = end;
        } else if word.eq_ignore_ascii_case(b"URL ") {
            at += 4;
            let (url, end) = match message.get(at)? {
                b'{' | b'~' => literal(message, at)?,
                b'"' => {
                    let (mut url, mut i) = (Vec::new(), at + 1);
                    loop {
                        match *message.get(i)? {
                            b'\\' => url.push(*message.get(i + 1)?),
                            b'"' => break,
                            b'\r' | b'\n' => return None,
                            b => url.push(b),
                        }
                        i += if message[i] == b'\\' { 2 } else { 1 };
                    }
                    (url, i + 1)
                }
                _ => {
                    let len = message[at..].iter().position(|&b| matches!(b, b' ' | b')' | b'\r'))?;
                    (message[at..at + len].to_vec(), at + len)
                }
            };
            parts.push(CatPart::Url(String::from_utf8(url).ok()?));
            at = end;
        } else {
            return None;
        }
        if parts.len() > MAX_CATENATE_PARTS {
            return None;
        }
    }
}

/// A parenthesized list starting at `s[0] == '('`: its inside and the rest.
pub(crate) fn paren(s: &str) -> Option<(&str, &str)> {
    if !s.starts_with('(') {
        return None;
    }
    let mut depth = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return Some((&s[1..i], &s[i + 1..]));
                }
            }
            _ => {}
        }
    }
    None
}

/// `s` after `prefix` (ASCII, any case), if it starts with it. Safe on any
/// UTF-8: the bytes matched are ASCII, so the cut is a char boundary.
pub(crate) fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.as_bytes().get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix.as_bytes()).then(|| &s[prefix.len()..])
}

fn words(s: &str) -> Vec<String> {
    s.split_ascii_whitespace().map(|w| w.to_ascii_uppercase()).collect()
}

/// `CREATE name (USE (\\Sent …))` (RFC 6154 §3, CREATE-SPECIAL-USE): the
/// plain CREATE and the attributes. Only a name on the first line (quoted
/// or an atom) takes parameters here.
fn create_use(tag: &str, args: &str, rest_of_message: &[u8]) -> Option<(Vec<u8>, Extension)> {
    let (_, after_name) = astring(args)?;
    let name = &args[..args.len() - after_name.len()];
    let (inside, after) = paren(after_name.trim_start())?;
    if !after.trim().is_empty() {
        return None;
    }
    let (attrs, tail) = paren(strip_prefix_ci(inside.trim_start(), "USE")?.trim_start())?;
    if !tail.trim().is_empty() {
        return None;
    }
    let mut out = format!("{tag} CREATE {name}").into_bytes();
    out.extend_from_slice(rest_of_message);
    Some((out, Extension::CreateUse(attrs.split_ascii_whitespace().map(String::from).collect())))
}

/// Rewrite a command message if it uses an extended form. Returns the plain
/// command bytes and the options, or `None` when there is nothing to do (the
/// message is then decoded as it is). A malformed extended form is left to
/// the codec, which answers BAD.
pub fn rewrite(message: &[u8]) -> Option<(Vec<u8>, Extension)> {
    if let Some(append) = append(message) {
        return Some(append);
    }
    let end = message.windows(2).position(|w| w == b"\r\n").unwrap_or(message.len());
    let first = std::str::from_utf8(&message[..end]).ok()?;
    let rest_of_message = &message[end..];
    let (tag, after_tag) = first.split_once(' ')?;
    let mut head = after_tag;
    let mut prefix = String::new();
    if let Some(rest) = strip_prefix_ci(head, "UID ") {
        prefix.push_str(&head[..4]);
        head = rest;
    }
    if let Some(after) = strip_prefix_ci(head, "SEARCH ") {
        let mut criteria = after.trim_start();
        let mut ret = None;
        if let Some(options) = strip_prefix_ci(criteria, "RETURN ") {
            let (r, rest) = return_options(options, true)?;
            ret = Some(r);
            criteria = rest;
        }
        let saved = match criteria.strip_prefix('$') {
            Some(rest) if rest.is_empty() || rest.starts_with(' ') => Some(format!("ALL{rest}")),
            _ => None,
        };
        let ext = match (&saved, ret) {
            (Some(_), ret) => Extension::Saved(ret),
            (None, Some(r)) => Extension::Search(r),
            (None, None) => return None,
        };
        let criteria = saved.as_deref().unwrap_or(criteria);
        let mut out = format!("{tag} {prefix}SEARCH {criteria}").into_bytes();
        out.extend_from_slice(rest_of_message);
        return Some((out, ext));
    }
    // NOTIFY (RFC 5465) is read here and done by the session as a NOOP
    // that sets what to push (§3.1: NOTIFY SET implies a NOOP).
    if let Some(args) = strip_prefix_ci(head, "NOTIFY ").filter(|_| prefix.is_empty()) {
        let mut out = format!("{tag} NOOP").into_bytes();
        out.extend_from_slice(rest_of_message);
        return Some((out, Extension::Notify(crate::notify::parse(args))));
    }
    // RFC 5267 §4.3.5 `CANCELUPDATE 1*(SP quoted)`: a NOOP that also ends
    // the updates of the searches tagged so.
    if let Some(mut args) = strip_prefix_ci(head, "CANCELUPDATE ").filter(|_| prefix.is_empty()) {
        let mut tags = Vec::new();
        while !args.is_empty() {
            if !args.starts_with('"') || tags.len() >= MAX_LIST_PATTERNS {
                return None;
            }
            let (t, rest) = astring(args)?;
            tags.push(String::from_utf8(t).ok()?);
            args = match rest.strip_prefix(' ') {
                Some(more) if !more.is_empty() => more,
                Some(_) => return None,
                None if rest.is_empty() => rest,
                None => return None,
            };
        }
        if tags.is_empty() {
            return None;
        }
        let mut out = format!("{tag} NOOP").into_bytes();
        out.extend_from_slice(rest_of_message);
        return Some((out, Extension::CancelUpdate(tags)));
    }
    // `$` as the message set of a command that takes one.
    let (verb, args) = head.split_once(' ').unwrap_or((head, ""));
    let takes_set = ["FETCH", "STORE", "COPY", "MOVE"].iter().any(|v| verb.eq_ignore_ascii_case(v))
        || (!prefix.is_empty() && verb.eq_ignore_ascii_case("EXPUNGE"));
    if takes_set {
        let rest = args.strip_prefix('$')?;
        if !(rest.is_empty() || rest.starts_with(' ')) {
            return None;
        }
        let mut out = format!("{tag} {prefix}{verb} 1{rest}").into_bytes();
        out.extend_from_slice(rest_of_message);
        return Some((out, Extension::Saved(None)));
    }
    // ESORT (RFC 5267 §3): `SORT RETURN (...) (criteria) charset keys`.
    if let Some(after) = strip_prefix_ci(head, "SORT ")
        && let Some(options) = strip_prefix_ci(after.trim_start(), "RETURN ")
    {
        let (r, rest) = return_options(options, false)?;
        let mut out = format!("{tag} {prefix}SORT {rest}").into_bytes();
        out.extend_from_slice(rest_of_message);
        return Some((out, Extension::Search(r)));
    }
    if let Some(args) = strip_prefix_ci(head, "CREATE ").filter(|_| prefix.is_empty()) {
        return create_use(tag, args, rest_of_message);
    }
    let list_args = strip_prefix_ci(head, "LIST ").filter(|_| prefix.is_empty())?;
    let mut args = list_args.trim_start();
    let mut o = ListOptions::default();
    let mut extended = false;
    if args.starts_with('(') {
        let (inside, rest) = paren(args)?;
        for w in words(inside) {
            match w.as_str() {
                "SUBSCRIBED" => o.select_subscribed = true,
                "SPECIAL-USE" => o.select_special_use = true,
                "RECURSIVEMATCH" => o.recursive_match = true,
                "REMOTE" => {}
                _ => return None,
            }
        }
        args = rest.trim_start();
        extended = true;
        // RFC 5258 §3.1: RECURSIVEMATCH only modifies another selection option.
        if o.recursive_match && !(o.select_subscribed || o.select_special_use) {
            return None;
        }
    }
    // RETURN (...) at the end of the line.
    let upper = args.to_ascii_uppercase();
    if let Some(at) = upper.rfind(" RETURN (") {
        let (inside, tail) = paren(&args[at + 8..])?;
        if !tail.trim().is_empty() {
            return None;
        }
        let mut ws = words(inside).into_iter().peekable();
        while let Some(w) = ws.next() {
            match w.as_str() {
                "SUBSCRIBED" => o.return_subscribed = true,
                "CHILDREN" => o.return_children = true,
                "SPECIAL-USE" => o.return_special_use = true,
                "STATUS" => {
                    // STATUS (items): the items follow as a list.
                    let start = upper[at..].find("STATUS")? + at + 6;
                    let (items, _) = paren(args[start..].trim_start())?;
                    o.return_status = Some(items.to_string());
                    for _ in 0..items.split_ascii_whitespace().count() {
                        ws.next();
                    }
                }
                // RFC 5258 §3: an unknown return option is BAD (the codec says it).
                _ => return None,
            }
        }
        args = &args[..at];
        extended = true;
    }
    // Several patterns: `reference (pattern ...)`; the codec gets the first.
    let mut plain = args.to_string();
    let (reference, after) = astring(args)?;
    if let Some((inside, tail)) = paren(after.trim_start()) {
        if !tail.trim().is_empty() {
            return None;
        }
        let mut rest = inside.trim_start();
        while !rest.is_empty() {
            let (p, r) = astring(rest)?;
            o.patterns.push(p);
            rest = r.trim_start();
        }
        if o.patterns.is_empty() || o.patterns.len() > MAX_LIST_PATTERNS {
            return None;
        }
        plain = format!("{} {}", quoted(&reference)?, quoted(&o.patterns[0])?);
        extended = true;
    }
    if !extended {
        return None;
    }
    let args = plain;
    let mut out = format!("{tag} LIST {args}").into_bytes();
    out.extend_from_slice(rest_of_message);
    Some((out, Extension::List(o)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rw(s: &str) -> Option<(String, Extension)> {
        rewrite(s.as_bytes()).map(|(b, e)| (String::from_utf8(b).unwrap(), e))
    }

    #[test]
    fn search_return_is_taken_out() {
        let (cmd, ext) = rw("a UID SEARCH RETURN (MIN COUNT) UNSEEN\r\n").unwrap();
        assert_eq!(cmd, "a UID SEARCH UNSEEN\r\n");
        assert_eq!(ext, Extension::Search(SearchReturn { min: true, count: true, ..Default::default() }));
        let (cmd, ext) = rw("b search return () all\r\n").unwrap();
        assert_eq!(cmd, "b SEARCH all\r\n");
        assert_eq!(ext, Extension::Search(SearchReturn { all: true, ..Default::default() }));
        assert!(rw("c SEARCH UNSEEN\r\n").is_none(), "plain SEARCH stays as it is");
        assert!(rw("c SEARCH $x\r\n").is_none(), "not the saved result");
        assert!(rw("d SEARCH RETURN (BOGUS) ALL\r\n").is_none(), "unknown option: the codec answers BAD");
        assert!(rw("e SEARCH RETURN (MIN ALL\r\n").is_none());
    }

    #[test]
    fn list_selection_and_return_options() {
        let (cmd, ext) = rw("a LIST (SPECIAL-USE) \"\" *\r\n").unwrap();
        assert_eq!(cmd, "a LIST \"\" *\r\n");
        assert_eq!(ext, Extension::List(ListOptions { select_special_use: true, ..Default::default() }));
        let (cmd, ext) = rw("b LIST \"\" % RETURN (SUBSCRIBED CHILDREN SPECIAL-USE)\r\n").unwrap();
        assert_eq!(cmd, "b LIST \"\" %\r\n");
        assert_eq!(
            ext,
            Extension::List(ListOptions {
                return_subscribed: true,
                return_children: true,
                return_special_use: true,
                ..Default::default()
            })
        );
        let (_, ext) = rw("c LIST (SUBSCRIBED RECURSIVEMATCH) \"\" * RETURN (STATUS (MESSAGES UNSEEN))\r\n").unwrap();
        let Extension::List(o) = ext else { panic!() };
        assert!(o.select_subscribed && o.recursive_match);
        assert_eq!(o.return_status.as_deref(), Some("MESSAGES UNSEEN"));
        assert!(rw("d LIST \"\" *\r\n").is_none());
        assert!(rw("e LIST (NONSENSE) \"\" *\r\n").is_none());
        // RFC 5258 §3: several patterns; the codec sees the first.
        let (cmd, ext) = rw("f LIST \"\" (INBOX \"Work/%\" \"a\\\"b\")\r\n").unwrap();
        assert_eq!(cmd, "f LIST \"\" \"INBOX\"\r\n");
        let Extension::List(o) = ext else { panic!() };
        assert_eq!(o.patterns, [b"INBOX".to_vec(), b"Work/%".to_vec(), b"a\"b".to_vec()]);
        let (cmd, ext) = rw("g LIST (SUBSCRIBED) Work (* %) RETURN (CHILDREN)\r\n").unwrap();
        assert_eq!(cmd, "g LIST \"Work\" \"*\"\r\n");
        assert!(matches!(ext, Extension::List(ListOptions { select_subscribed: true, return_children: true, .. })));
        assert!(rw("h LIST \"\" ()\r\n").is_none(), "no pattern: BAD");
        assert!(rw("h LIST \"\" (a b\r\n").is_none());
        let many = vec!["x"; MAX_LIST_PATTERNS + 1].join(" ");
        assert!(rw(&format!("i LIST \"\" ({many})\r\n")).is_none(), "over the bound: BAD");
        // RECURSIVEMATCH alone, an unknown RETURN option: BAD (the codec).
        assert!(rw("j LIST (RECURSIVEMATCH) \"\" *\r\n").is_none());
        assert!(rw("k LIST \"\" * RETURN (NONSENSE)\r\n").is_none());
        assert!(rw("garbage").is_none() && rw("").is_none() && rw("x\u{0}y LIST (").is_none());
    }

    #[test]
    fn sort_return_is_taken_out() {
        let (cmd, ext) = rw("a UID SORT RETURN (MIN COUNT) (DATE) UTF-8 ALL\r\n").unwrap();
        assert_eq!(cmd, "a UID SORT (DATE) UTF-8 ALL\r\n");
        assert_eq!(ext, Extension::Search(SearchReturn { min: true, count: true, ..Default::default() }));
        let (cmd, ext) = rw("b sort return () (subject) UTF-8 ALL\r\n").unwrap();
        assert_eq!(cmd, "b SORT (subject) UTF-8 ALL\r\n");
        assert_eq!(ext, Extension::Search(SearchReturn { all: true, ..Default::default() }));
        assert!(rw("c SORT (DATE) UTF-8 ALL\r\n").is_none(), "plain SORT stays as it is");
        assert!(rw("d SORT RETURN (SAVE) (DATE) UTF-8 ALL\r\n").is_none(), "no SAVE for SORT: BAD");
    }

    #[test]
    fn context_options_partial_update_and_cancelupdate() {
        let (cmd, ext) = rw("a UID SEARCH RETURN (PARTIAL 500:1 COUNT) UNSEEN\r\n").unwrap();
        assert_eq!(cmd, "a UID SEARCH UNSEEN\r\n");
        assert_eq!(ext, Extension::Search(SearchReturn { partial: Some((1, 500)), count: true, ..Default::default() }));
        let (_, ext) = rw("b SORT RETURN (update partial 1:10) (DATE) UTF-8 ALL\r\n").unwrap();
        assert_eq!(ext, Extension::Search(SearchReturn { partial: Some((1, 10)), update: true, ..Default::default() }));
        // CONTEXT is a hint: alone it is ALL; UPDATE alone returns nothing.
        let (_, ext) = rw("c SEARCH RETURN (CONTEXT) ALL\r\n").unwrap();
        assert_eq!(ext, Extension::Search(SearchReturn { all: true, ..Default::default() }));
        let (_, ext) = rw("d SEARCH RETURN (UPDATE) FLAGGED\r\n").unwrap();
        assert_eq!(ext, Extension::Search(SearchReturn { update: true, ..Default::default() }));
        for bad in [
            "e SEARCH RETURN (PARTIAL 1:2 ALL) ALL\r\n",
            "e SEARCH RETURN (PARTIAL 1:2 PARTIAL 3:4) ALL\r\n",
            "e SEARCH RETURN (PARTIAL) ALL\r\n",
            "e SEARCH RETURN (PARTIAL 0:3) ALL\r\n",
            "e SEARCH RETURN (PARTIAL -1:-3) ALL\r\n",
            "e SEARCH RETURN (PARTIAL 1:*) ALL\r\n",
            "e SEARCH RETURN (PARTIAL 1) ALL\r\n",
        ] {
            assert!(rw(bad).is_none(), "{bad}: BAD");
        }
        let (cmd, ext) = rw("f CANCELUPDATE \"a1\" \"b 2\"\r\n").unwrap();
        assert_eq!((cmd.as_str(), ext), ("f NOOP\r\n", Extension::CancelUpdate(vec!["a1".into(), "b 2".into()])));
        for bad in [
            "g CANCELUPDATE\r\n",
            "g CANCELUPDATE a1\r\n",
            "g CANCELUPDATE \"a1\" \r\n",
            "g UID CANCELUPDATE \"a\"\r\n",
        ] {
            assert!(rw(bad).is_none(), "{bad}: BAD");
        }
    }

    fn texts(data: &[CatPart]) -> Vec<&[u8]> {
        data.iter()
            .map(|p| match p {
                CatPart::Text(t) => t.as_slice(),
                CatPart::Url(u) => u.as_bytes(),
            })
            .collect()
    }

    #[test]
    fn multiappend_keeps_the_first_message_for_the_codec() {
        let m = b"a APPEND \"Sent Items\" (\\Seen) \" 1-Jan-2020 10:00:00 +0000\" {3}\r\none (\\Draft $X) ~{4+}\r\nt\x00wo {5}\r\nthree\r\n";
        let (plain, ext) = rewrite(m).unwrap();
        assert_eq!(plain, b"a APPEND \"Sent Items\" (\\Seen) \" 1-Jan-2020 10:00:00 +0000\" {3}\r\none\r\n");
        let Extension::Append { first: None, rest: parts } = ext else { panic!("{ext:?}") };
        assert_eq!(parts.len(), 2);
        assert_eq!((parts[0].flags.clone(), parts[0].date.clone()), (vec!["\\Draft".to_string(), "$X".into()], None));
        assert_eq!(texts(&parts[0].data), [b"t\x00wo"]);
        assert_eq!((parts[1].flags.len(), texts(&parts[1].data)), (0, vec![&b"three"[..]]));
        assert!(rewrite(b"b APPEND INBOX {3}\r\none\r\n").is_none(), "one message: a plain APPEND");
        for bad in [
            &b"c APPEND INBOX {3}\r\none {9}\r\nshort\r\n"[..],
            b"d APPEND INBOX {3}\r\none junk\r\n",
            b"e APPEND INBOX {3}\r\none {x}\r\n\r\n",
        ] {
            assert!(rewrite(bad).is_none(), "{:?}: left to the codec, which answers BAD", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn catenate_parts_are_taken_out() {
        let m = b"a APPEND Drafts (\\Draft) CATENATE (URL \"/Drafts;UIDVALIDITY=7/;UID=2/;SECTION=HEADER\" TEXT {4}\r\n\r\nhi url /INBOX/;UID=1 TEXT ~{2+}\r\n\x00\n URL {13}\r\n/INBOX/;UID=1)\r\n";
        let (plain, ext) = rewrite(m).unwrap();
        assert_eq!(plain, b"a APPEND Drafts (\\Draft) {0}\r\n\r\n");
        let Extension::Append { first: Some(first), rest } = ext else { panic!("{ext:?}") };
        assert!(rest.is_empty());
        assert_eq!(
            texts(&first),
            [
                &b"/Drafts;UIDVALIDITY=7/;UID=2/;SECTION=HEADER"[..],
                b"\r\nhi",
                b"/INBOX/;UID=1",
                b"\x00\n",
                b"/INBOX/;UID=1"
            ]
        );
        assert!(matches!(first[1], CatPart::Text(_)) && matches!(first[2], CatPart::Url(_)));
        // With MULTIAPPEND: a plain first message, a catenated second.
        let m = b"b APPEND INBOX {3}\r\none \"1-Jan-2020 10:00:00 +0000\" CATENATE (TEXT {3}\r\ntwo)\r\n";
        let (plain, ext) = rewrite(m).unwrap();
        assert_eq!(plain, b"b APPEND INBOX {3}\r\none\r\n");
        let Extension::Append { first: None, rest } = ext else { panic!("{ext:?}") };
        assert_eq!(
            (rest[0].date.as_deref(), texts(&rest[0].data)),
            (Some("1-Jan-2020 10:00:00 +0000"), vec![&b"two"[..]])
        );
        let many = vec!["URL /INBOX/;UID=1"; MAX_CATENATE_PARTS + 1].join(" ");
        for bad in [
            "c APPEND INBOX CATENATE ()\r\n".to_string(),
            "d APPEND INBOX CATENATE (TEXT)\r\n".into(),
            "e APPEND INBOX CATENATE (URL /x/;UID=1\r\n".into(),
            "f APPEND INBOX CATENATE (BODY {1}\r\nx)\r\n".into(),
            "g APPEND INBOX CATENATE (URL \"/x\r\n\")\r\n".into(),
            "h APPEND INBOX CATENATE (TEXT {1}\r\nx)junk\r\n".into(),
            format!("i APPEND INBOX CATENATE ({many})\r\n"),
        ] {
            assert!(rewrite(bad.as_bytes()).is_none(), "{bad:?}: left to the codec, which answers BAD");
        }
    }

    #[test]
    fn create_with_a_special_use() {
        let (cmd, ext) = rw("a CREATE Sent2 (USE (\\Sent))\r\n").unwrap();
        assert_eq!((cmd.as_str(), ext), ("a CREATE Sent2\r\n", Extension::CreateUse(vec!["\\Sent".into()])));
        let (cmd, ext) = rw("b create \"My (old) mail\" (use (\\Archive \\Junk))\r\n").unwrap();
        assert_eq!(cmd, "b CREATE \"My (old) mail\"\r\n");
        assert_eq!(ext, Extension::CreateUse(vec!["\\Archive".into(), "\\Junk".into()]));
        assert!(rw("c CREATE Plain\r\n").is_none(), "plain CREATE stays as it is");
        for bad in ["d CREATE x (USE (\\Sent)\r\n", "e CREATE x (OTHER (a))\r\n", "f CREATE x (USE (\\Sent)) y\r\n"] {
            assert!(rw(bad).is_none(), "{bad}: left to the codec, which answers BAD");
        }
    }

    #[test]
    fn the_saved_result_as_a_message_set_or_first_key() {
        let (cmd, ext) = rw("a FETCH $ (FLAGS)\r\n").unwrap();
        assert_eq!((cmd.as_str(), ext), ("a FETCH 1 (FLAGS)\r\n", Extension::Saved(None)));
        let (cmd, _) = rw("b UID STORE $ +FLAGS (\\Seen)\r\n").unwrap();
        assert_eq!(cmd, "b UID STORE 1 +FLAGS (\\Seen)\r\n");
        let (cmd, _) = rw("c uid expunge $\r\n").unwrap();
        assert_eq!(cmd, "c uid expunge 1\r\n");
        let (cmd, _) = rw("d MOVE $ Archive\r\n").unwrap();
        assert_eq!(cmd, "d MOVE 1 Archive\r\n");
        let (cmd, ext) = rw("e SEARCH $ UNSEEN\r\n").unwrap();
        assert_eq!((cmd.as_str(), ext), ("e SEARCH ALL UNSEEN\r\n", Extension::Saved(None)));
        let (cmd, ext) = rw("f UID SEARCH RETURN (COUNT) $\r\n").unwrap();
        assert_eq!(cmd, "f UID SEARCH ALL\r\n");
        assert_eq!(ext, Extension::Saved(Some(SearchReturn { count: true, ..Default::default() })));
        assert!(rw("g FETCH 1:3 (FLAGS)\r\n").is_none());
        assert!(rw("h FETCH $1 (FLAGS)\r\n").is_none());
        assert!(rw("i EXPUNGE\r\n").is_none());
    }
}
