//! NOTIFY (RFC 5465): the command's event groups, read and checked.
//!
//! Pure: `parse` takes the arguments after `NOTIFY` and says what the
//! client asked for, or why it is refused; the session keeps the result
//! and pushes the events (`session.rs`).

/// The refusal's code for an event this server does not push: it lists
/// those it does (RFC 5465 §3.1).
pub const BADEVENT: &str = "BADEVENT (MessageNew MessageExpunge FlagChange MailboxName SubscriptionChange)";

/// Most event groups, and mailboxes named in one group.
pub const MAX_GROUPS: usize = 32;

/// Which mailboxes an event group covers (RFC 5465 §6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    Selected,
    SelectedDelayed,
    Inboxes,
    Personal,
    Subscribed,
    /// These mailboxes and every one below them, names as sent.
    Subtree(Vec<Vec<u8>>),
    /// Exactly these mailboxes, no wildcards (§6.6), names as sent.
    Mailboxes(Vec<Vec<u8>>),
}

/// What a group wants told (RFC 5465 §5); all false for `NONE`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Events {
    /// MessageNew and MessageExpunge (always together, §5).
    pub messages: bool,
    pub flags: bool,
    /// MailboxName (§5.4): creations, deletions, renames.
    pub names: bool,
    /// SubscriptionChange (§5.5).
    pub subscriptions: bool,
    /// MessageNew's FETCH attributes, as written between its parentheses.
    pub fetch: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub filter: Filter,
    pub events: Events,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notify {
    /// `NOTIFY NONE`.
    None,
    /// `NOTIFY SET [STATUS] groups`.
    Set { status: bool, groups: Vec<Group> },
    /// A syntax or composition error: `BAD` with this reason.
    Bad(String),
    /// An event this server does not push: `NO [BADEVENT (…)]` (§3.1).
    BadEvent,
}

/// The arguments after `NOTIFY ` (RFC 5465 §8 `notify`).
pub fn parse(args: &str) -> Notify {
    match read(args) {
        Ok(n) => n,
        Err(Refusal::Bad(why)) => Notify::Bad(why),
        Err(Refusal::BadEvent) => Notify::BadEvent,
    }
}

enum Refusal {
    Bad(String),
    BadEvent,
}

fn bad<T>(why: &str) -> Result<T, Refusal> {
    Err(Refusal::Bad(why.to_string()))
}

fn read(args: &str) -> Result<Notify, Refusal> {
    let mut p = Reader { s: args.trim_end_matches(['\r', '\n']), at: 0 };
    let verb = p.word();
    if verb.eq_ignore_ascii_case("NONE") {
        return if p.done() { Ok(Notify::None) } else { bad("NOTIFY NONE takes nothing more") };
    }
    if !verb.eq_ignore_ascii_case("SET") {
        return bad("NOTIFY SET or NOTIFY NONE");
    }
    let mut status = false;
    let mut groups = Vec::new();
    let mut selected_seen = false;
    while p.space() {
        if p.peek() != Some('(') {
            let w = p.word();
            if w.eq_ignore_ascii_case("STATUS") && !status && groups.is_empty() {
                status = true;
                continue;
            }
            return bad("an event group is in parentheses");
        }
        p.at += 1;
        let filter = match p.word().to_ascii_lowercase().as_str() {
            "selected" => Filter::Selected,
            "selected-delayed" => Filter::SelectedDelayed,
            "inboxes" => Filter::Inboxes,
            "personal" => Filter::Personal,
            "subscribed" => Filter::Subscribed,
            "subtree" => Filter::Subtree(p.mailboxes()?),
            "mailboxes" => Filter::Mailboxes(p.mailboxes()?),
            _ => return bad("unknown mailbox filter"),
        };
        let selected = matches!(filter, Filter::Selected | Filter::SelectedDelayed);
        if selected && std::mem::replace(&mut selected_seen, true) {
            // RFC 5465 §6.1: one of selected and selected-delayed, once.
            return bad("the selected mailbox is named twice");
        }
        if !p.space() {
            return bad("events follow the mailbox filter");
        }
        let events = p.events(selected)?;
        if !p.eat(')') {
            return bad("an event group ends with )");
        }
        groups.push(Group { filter, events });
        if groups.len() > MAX_GROUPS {
            return bad("too many event groups");
        }
    }
    if !p.done() || groups.is_empty() {
        return bad("NOTIFY SET needs event groups");
    }
    Ok(Notify::Set { status, groups })
}

struct Reader<'a> {
    s: &'a str,
    at: usize,
}

impl Reader<'_> {
    fn peek(&self) -> Option<char> {
        self.s[self.at..].chars().next()
    }

    fn done(&self) -> bool {
        self.at == self.s.len()
    }

    fn eat(&mut self, c: char) -> bool {
        let yes = self.peek() == Some(c);
        if yes {
            self.at += c.len_utf8();
        }
        yes
    }

    fn space(&mut self) -> bool {
        self.eat(' ')
    }

    /// Characters up to a space or parenthesis.
    fn word(&mut self) -> &str {
        let rest = &self.s[self.at..];
        let len = rest.find([' ', '(', ')']).unwrap_or(rest.len());
        self.at += len;
        &rest[..len]
    }

    /// One mailbox name: an atom or a quoted string (literals are not
    /// taken here).
    fn mailbox(&mut self) -> Result<Vec<u8>, Refusal> {
        let rest = &self.s[self.at..];
        match crate::extended::astring(rest) {
            Some((name, after)) if !rest.starts_with('{') => {
                self.at = self.s.len() - after.len();
                Ok(name)
            }
            _ => bad("a mailbox name is an atom or a quoted string"),
        }
    }

    /// `SP one-or-more-mailbox` after subtree or mailboxes.
    fn mailboxes(&mut self) -> Result<Vec<Vec<u8>>, Refusal> {
        if !self.space() {
            return bad("mailbox names follow subtree and mailboxes");
        }
        if !self.eat('(') {
            return Ok(vec![self.mailbox()?]);
        }
        let mut names = vec![self.mailbox()?];
        while self.space() {
            names.push(self.mailbox()?);
            if names.len() > MAX_GROUPS {
                return bad("too many mailboxes in one group");
            }
        }
        if !self.eat(')') {
            return bad("a list of mailboxes ends with )");
        }
        Ok(names)
    }

    /// `events` (RFC 5465 §8): NONE or a list, checked as §5 and §6.1 ask.
    fn events(&mut self, selected: bool) -> Result<Events, Refusal> {
        if !self.eat('(') {
            let w = self.word();
            return if w.eq_ignore_ascii_case("NONE") {
                Ok(Events::default())
            } else {
                bad("events are NONE or a list")
            };
        }
        let (mut new, mut expunge, mut flags, mut annotations, mut unsupported) = (false, false, false, false, false);
        let (mut names, mut subscriptions) = (false, false);
        let mut fetch = None;
        loop {
            let w = self.word().to_string();
            match w.to_ascii_lowercase().as_str() {
                "messagenew" => {
                    new = true;
                    if self.s[self.at..].starts_with(" (") {
                        self.at += 1;
                        fetch = Some(self.parenthesized()?);
                    }
                }
                "messageexpunge" => expunge = true,
                "flagchange" => flags = true,
                "annotationchange" => (annotations, unsupported) = (true, true),
                "mailboxname" | "subscriptionchange" if selected => {
                    // §6.1: only message events apply to the selected mailbox.
                    return bad("only message events apply to the selected mailbox");
                }
                "mailboxname" => names = true,
                "subscriptionchange" => subscriptions = true,
                "" => return bad("an empty event list"),
                other => {
                    // Mailbox events with the selected mailbox are an error
                    // (§6.1); other names are events not offered.
                    let mailbox_event =
                        ["mailboxname", "subscriptionchange", "mailboxmetadatachange", "servermetadatachange"]
                            .contains(&other);
                    if selected && mailbox_event {
                        return bad("only message events apply to the selected mailbox");
                    }
                    unsupported = true;
                }
            }
            if !self.space() {
                break;
            }
        }
        if !self.eat(')') {
            return bad("an event list ends with )");
        }
        if new != expunge {
            return bad("MessageNew and MessageExpunge go together");
        }
        if (flags || annotations) && !new {
            return bad("FlagChange and AnnotationChange need MessageNew and MessageExpunge");
        }
        if unsupported {
            return Err(Refusal::BadEvent);
        }
        Ok(Events { messages: new, flags, names, subscriptions, fetch })
    }

    /// A balanced parenthesized list at `(`: what is inside.
    fn parenthesized(&mut self) -> Result<String, Refusal> {
        let Some((inside, after)) = crate::extended::paren(&self.s[self.at..]) else {
            return bad("unbalanced parentheses");
        };
        self.at = self.s.len() - after.len();
        Ok(inside.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(args: &str) -> (bool, Vec<Group>) {
        match parse(args) {
            Notify::Set { status, groups } => (status, groups),
            other => panic!("{args}: {other:?}"),
        }
    }

    #[test]
    fn groups_are_read() {
        let (status, groups) = set(
            "SET STATUS (selected (MessageNew (UID BODY.PEEK[HEADER.FIELDS (From Subject)]) MessageExpunge FlagChange)) \
             (subtree (Lists \"Team A\") (MessageNew MessageExpunge)) (mailboxes Drafts NONE) (personal (messagenew messageexpunge))",
        );
        assert!(status);
        assert_eq!(groups.len(), 4);
        assert_eq!(groups[0].filter, Filter::Selected);
        assert_eq!(
            groups[0].events,
            Events {
                messages: true,
                flags: true,
                fetch: Some("UID BODY.PEEK[HEADER.FIELDS (From Subject)]".into()),
                ..Default::default()
            }
        );
        let (_, names) = set("SET (personal (MailboxName SubscriptionChange))");
        assert!(names[0].events.names && names[0].events.subscriptions && !names[0].events.messages);
        assert_eq!(groups[1].filter, Filter::Subtree(vec![b"Lists".to_vec(), b"Team A".to_vec()]));
        assert_eq!(groups[2], Group { filter: Filter::Mailboxes(vec![b"Drafts".to_vec()]), events: Events::default() });
        assert!(groups[3].events.messages && !groups[3].events.flags);
        assert_eq!(parse("NONE"), Notify::None);
        assert_eq!(set("set (Inboxes (MessageNew MessageExpunge))").1[0].filter, Filter::Inboxes);
    }

    #[test]
    fn refusals() {
        for bad in [
            "",
            "NONE x",
            "SET",
            "SET ()",
            "SET STATUS",
            "SET (selected (MessageNew))",
            "SET (selected (MessageExpunge))",
            "SET (selected (FlagChange))",
            "SET (selected (MessageNew MessageExpunge)) (selected-delayed (MessageNew MessageExpunge))",
            "SET (selected (MessageNew MessageExpunge MailboxName))",
            "SET (elsewhere (MessageNew MessageExpunge))",
            "SET (subtree (MessageNew MessageExpunge))",
            "SET (mailboxes {3}\r\nabc (MessageNew MessageExpunge))",
            "SET (personal ())",
            "SET (personal (MessageNew MessageExpunge)",
            "SET (personal (MessageNew (UID MessageExpunge))",
            "SET (personal (MessageNew MessageExpunge)) STATUS",
        ] {
            assert!(matches!(parse(bad), Notify::Bad(_)), "{bad:?}: {:?}", parse(bad));
        }
        for unsupported in [
            "SET (selected (MessageNew MessageExpunge AnnotationChange))",
            "SET (personal (ServerMetadataChange))",
            "SET (inboxes (SomethingNew))",
        ] {
            assert_eq!(parse(unsupported), Notify::BadEvent, "{unsupported}");
        }
    }
}
