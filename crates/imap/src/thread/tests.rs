//! Tests of SORT and THREAD (RFC 5256).

use super::*;

// ------------------------------------------------------------ helpers

/// A message with the given subject and sent date, Message-ID
/// "<seq@t>".
fn msg(seq: u32, subject: &str, sent: i64) -> Summary {
    let (base, reply) = base_subject(subject);
    Summary {
        seq,
        uid: seq + 1000,
        sent: Some(sent),
        subject: casemap(&base).into(),
        subject_is_reply: reply,
        message_id: Some(format!("{seq}@t").into()),
        ..Summary::default()
    }
}

/// `m` referencing the messages (or missing IDs) numbered `refs`.
fn refs(mut m: Summary, refs: &[u32]) -> Summary {
    m.references = refs.iter().map(|r| format!("{r}@t")).collect();
    m
}

/// The THREAD response of REFERENCES, messages shown by sequence number.
fn by_references(msgs: &[Summary]) -> String {
    render(&references(msgs), |i| msgs[i].seq)
}

fn by_subject(msgs: &[Summary]) -> String {
    render(&ordered_subject(msgs), |i| msgs[i].seq)
}

fn criterion(reverse: bool, key: SortKey) -> SortCriterion {
    SortCriterion { reverse, key }
}

/// The sequence numbers in the SORT order.
fn sorted(msgs: &[Summary], criteria: &[SortCriterion]) -> Vec<u32> {
    sort(msgs, criteria).into_iter().map(|i| msgs[i].seq).collect()
}

fn summary(header: &str) -> Summary {
    Summary::from_header(1, 1, 42, 100, header.as_bytes())
}

// ------------------------------------------------------- base subject

#[test]
fn base_subject_removes_leaders_blobs_and_trailers() {
    // RFC 5256 §2.1 steps (2) to (5).
    assert_eq!(base_subject("Re: [foo] Fwd: Hello (fwd)"), ("Hello".into(), true));
    assert_eq!(base_subject("Re[2]: x"), ("x".into(), true));
    assert_eq!(base_subject("RE [2] : x"), ("x".into(), true));
    assert_eq!(base_subject("fw: x"), ("x".into(), true));
    assert_eq!(base_subject("FWD:x"), ("x".into(), true));
    assert_eq!(base_subject("Re: Re: re: x"), ("x".into(), true));
    assert_eq!(base_subject("[list] Re: x"), ("x".into(), true));
    assert_eq!(base_subject("[a][b] x"), ("x".into(), false));
    assert_eq!(base_subject("hello(fwd) (FWD)  "), ("hello".into(), true));
    assert_eq!(base_subject("Re:"), ("".into(), true));
    assert_eq!(base_subject(""), ("".into(), false));
}

#[test]
fn base_subject_keeps_what_is_not_a_marker() {
    assert_eq!(base_subject("Hello"), ("Hello".into(), false));
    // "Ref:" is not "re" *WSP ":".
    assert_eq!(base_subject("Ref: x"), ("Ref: x".into(), false));
    assert_eq!(base_subject("Regards"), ("Regards".into(), false));
    // RFC 5256 §2.1 (4): a blob goes only when something remains.
    assert_eq!(base_subject("[blob]"), ("[blob]".into(), false));
    assert_eq!(base_subject("[a] [b]"), ("[b]".into(), false));
    // A "[" inside is not a blob.
    assert_eq!(base_subject("[a[b] x"), ("[a[b] x".into(), false));
    assert_eq!(base_subject("x (fwd) y"), ("x (fwd) y".into(), false));
    assert_eq!(base_subject("[Liste française] x"), ("x".into(), false));
}

#[test]
fn base_subject_unwraps_forward_headers() {
    // RFC 5256 §2.1 (6), and again from (2).
    assert_eq!(base_subject("[fwd: Re: x]"), ("x".into(), true));
    assert_eq!(base_subject("[Fwd: [Fwd: x (fwd)]]"), ("x".into(), true));
    assert_eq!(base_subject("Re: [fwd: x] (fwd)"), ("x".into(), true));
    // Not both ends: a blob before the text, which goes.
    assert_eq!(base_subject("[fwd: x] y"), ("y".into(), false));
    assert_eq!(base_subject("[fwd: x"), ("[fwd: x".into(), false));
}

#[test]
fn base_subject_folds_whitespace() {
    // RFC 5256 §2.1 (1).
    assert_eq!(base_subject("  Re:\t hello \r\n\t world  "), ("hello world".into(), true));
    assert_eq!(base_subject("a\t\tb"), ("a b".into(), false));
}

#[test]
fn casemap_folds_case_and_compatibility_forms() {
    assert_eq!(casemap("HeLLo"), "HELLO");
    assert_eq!(casemap("ÉCOLE"), casemap("école"));
    assert_eq!(casemap("ﬁle"), "FILE");
    assert_eq!(casemap("ℌ"), "H");
    // As RFC 5051's titlecase: `[` and `_` sort after letters, as in Dovecot.
    assert!(casemap("budget") < casemap("[patch]") && casemap("Zed") < casemap("_x"));
    assert_ne!(casemap("école"), casemap("ecole"));
}

// ---------------------------------------------------------- from_header

#[test]
fn summary_decodes_the_subject() {
    let s = summary("Subject: =?UTF-8?Q?R=C3=A9union?=\r\n\r\n");
    assert_eq!(&*s.subject, "RE\u{301}UNION");
    assert_eq!((&*s.subject, s.subject_is_reply), (&*casemap("réunion"), false));
    let s = summary("Subject: =?UTF-8?Q?Re=3A_R=C3=89UNION?=\r\n\r\n");
    assert_eq!((&*s.subject, s.subject_is_reply), (&*casemap("réunion"), true));
    let s = summary("Subject: Re: [list]\r\n\tHello\r\n World\r\n\r\n");
    assert_eq!((&*s.subject, s.subject_is_reply), ("HELLO WORLD", true));
}

#[test]
fn summary_reads_the_sent_date_in_utc() {
    let s = summary("Date: Mon, 1 Jan 2024 10:00:00 +0200\r\n\r\n");
    assert_eq!(s.sent, Some(1_704_096_000));
    assert_eq!(s.sent_date(), 1_704_096_000);
    let s = summary("Date: the day after tomorrow\r\n\r\n");
    assert_eq!(s.sent, None);
    assert_eq!(s.sent_date(), 42);
    assert_eq!(summary("Subject: x\r\n\r\n").sent, None);
}

#[test]
fn summary_reads_the_first_addresses() {
    let s = summary(concat!(
        "From: \"Doe, John\" <John.Doe@Example.COM>, other@x\r\n",
        "To: <Alice@X.org>\r\n",
        "Cc: =?UTF-8?Q?J=C3=B6rg?= <Joerg@x>\r\n",
        "\r\n",
    ));
    assert_eq!((&*s.from, &*s.display_from), ("JOHN.DOE", "DOE, JOHN"));
    // RFC 5957 §3: no display name, the addr-spec.
    assert_eq!((&*s.to, &*s.display_to), ("ALICE", "ALICE@X.ORG"));
    assert_eq!(&*s.cc, "JOERG");
    let s = summary("From: =?UTF-8?Q?Andr=C3=A9?= <z@x>\r\nTo: undisclosed-recipients:;\r\n\r\n");
    assert_eq!((&*s.from, &*s.display_from), ("Z", &*casemap("André")));
    // A group shows as its name, as in ENVELOPE.
    assert_eq!((&*s.to, &*s.display_to), ("UNDISCLOSED-RECIPIENTS", "UNDISCLOSED-RECIPIENTS"));
    let s = summary("Subject: x\r\n\r\n");
    assert_eq!((&*s.from, &*s.to, &*s.cc), ("", "", ""));
    assert_eq!((&*s.display_from, &*s.display_to), ("", ""));
}

#[test]
fn summary_reads_message_ids_and_references() {
    let s = summary(concat!(
        "Message-ID: <\"a.b\"@x>\r\n",
        "References: <1@x> (not <9@x>) <2@x>\r\n <3@x> <bad> <4@x\r\n",
        "In-Reply-To: <p@x>\r\n",
        "\r\n",
    ));
    // RFC 5256 §3: quoting does not make another msg-id.
    assert_eq!(s.message_id.as_deref(), Some("a.b@x"));
    assert_eq!(*s.references, ["1@x", "2@x", "3@x"]);
    // No valid References: the first valid In-Reply-To msg-id.
    let s = summary("References: garbage\r\nIn-Reply-To: <p@x> <q@x>\r\n\r\n");
    assert_eq!(*s.references, ["p@x"]);
    let s = summary("In-Reply-To: <p@x> <q@x>\r\n\r\n");
    assert_eq!(*s.references, ["p@x"]);
    let s = summary("Message-ID: no-brackets@x\r\n\r\n");
    assert_eq!((s.message_id, s.references.len()), (None, 0));
}

#[test]
fn summary_keeps_the_last_references() {
    let ids: Vec<String> = (0..150).map(|i| format!("<{i}@x>")).collect();
    let s = summary(&format!("References: {}\r\n\r\n", ids.join("\r\n ")));
    assert_eq!(s.references.len(), MAX_REFERENCES);
    assert_eq!(s.references.first().map(String::as_str), Some("50@x"));
    assert_eq!(s.references.last().map(String::as_str), Some("149@x"));
}

#[test]
fn summary_of_no_header_is_empty() {
    let s = Summary::from_header(3, 7, 42, 100, b"");
    assert_eq!(s, Summary { seq: 3, uid: 7, internal_date: 42, size: 100, ..Summary::default() });
    // A header without its blank line is read all the same.
    assert_eq!(&*summary("Subject: Re: x").subject, "X");
}

// ------------------------------------------------------------------ SORT

#[test]
fn sort_by_each_key() {
    let mut a = msg(1, "b", 30);
    let mut b = msg(2, "Re: c", 10);
    let mut c = msg(3, "a", 20);
    (a.internal_date, b.internal_date, c.internal_date) = (3, 1, 2);
    (a.size, b.size, c.size) = (20, 30, 10);
    (a.from, b.from, c.from) = ("c".into(), "".into(), "b".into());
    (a.to, b.to, c.to) = ("a".into(), "c".into(), "b".into());
    (a.cc, b.cc, c.cc) = ("b".into(), "a".into(), "c".into());
    (a.display_from, b.display_from, c.display_from) = ("z".into(), "x".into(), "y".into());
    (a.display_to, b.display_to, c.display_to) = ("x".into(), "z".into(), "y".into());
    let msgs = [a, b, c];
    let by = |key| sorted(&msgs, &[criterion(false, key)]);
    assert_eq!(by(SortKey::Arrival), [2, 3, 1]);
    assert_eq!(by(SortKey::Date), [2, 3, 1]);
    assert_eq!(by(SortKey::Size), [3, 1, 2]);
    assert_eq!(by(SortKey::Subject), [3, 1, 2]);
    // The empty string sorts first.
    assert_eq!(by(SortKey::From), [2, 3, 1]);
    assert_eq!(by(SortKey::To), [1, 3, 2]);
    assert_eq!(by(SortKey::Cc), [2, 1, 3]);
    assert_eq!(by(SortKey::DisplayFrom), [2, 3, 1]);
    assert_eq!(by(SortKey::DisplayTo), [1, 3, 2]);
    assert_eq!(sorted(&msgs, &[criterion(true, SortKey::Size)]), [2, 1, 3]);
    assert_eq!(sorted(&msgs, &[criterion(true, SortKey::Subject)]), [2, 1, 3]);
}

#[test]
fn sort_by_several_keys_then_sequence_number() {
    let mut msgs = vec![msg(4, "b", 1), msg(2, "a", 1), msg(3, "b", 2), msg(1, "a", 1), msg(5, "b", 2)];
    for m in &mut msgs {
        m.size = 7;
    }
    // SUBJECT, then REVERSE DATE, then the sequence number.
    let criteria = [criterion(false, SortKey::Subject), criterion(true, SortKey::Date)];
    assert_eq!(sorted(&msgs, &criteria), [1, 2, 3, 5, 4]);
    // Equal keys: mailbox order, whatever the order given, and never
    // reversed.
    assert_eq!(sorted(&msgs, &[criterion(false, SortKey::Size)]), [1, 2, 3, 4, 5]);
    assert_eq!(sorted(&msgs, &[criterion(true, SortKey::Size)]), [1, 2, 3, 4, 5]);
    assert_eq!(sorted(&msgs, &[]), [1, 2, 3, 4, 5]);
}

#[test]
fn sort_by_date_falls_back_to_the_internal_date() {
    let mut a = msg(1, "x", 30);
    let mut b = msg(2, "x", 0);
    let c = msg(3, "x", 10);
    b.sent = None;
    b.internal_date = 20;
    a.internal_date = 1;
    let msgs = [a, b, c];
    assert_eq!(sorted(&msgs, &[criterion(false, SortKey::Date)]), [3, 2, 1]);
    assert_eq!(sorted(&msgs, &[criterion(false, SortKey::Arrival)]), [3, 1, 2]);
}

#[test]
fn sort_by_display_name_or_address() {
    let header = |from: &str| format!("From: {from}\r\n\r\n");
    let msgs = [
        Summary::from_header(1, 1, 0, 0, header("Zoe <alpha@x>").as_bytes()),
        Summary::from_header(2, 2, 0, 0, header("<beta@x>").as_bytes()),
        Summary::from_header(3, 3, 0, 0, header("\"\" <Gamma@x>").as_bytes()),
        Summary::from_header(4, 4, 0, 0, header("ALAN <zulu@x>").as_bytes()),
    ];
    assert_eq!(sorted(&msgs, &[criterion(false, SortKey::DisplayFrom)]), [4, 2, 3, 1]);
    assert_eq!(sorted(&msgs, &[criterion(false, SortKey::From)]), [1, 2, 3, 4]);
}

// -------------------------------------------------------- ORDEREDSUBJECT

#[test]
fn ordered_subject_groups_by_base_subject() {
    let msgs = [
        msg(1, "Hello", 10),
        msg(2, "Re: hello", 5),
        msg(3, "World", 7),
        msg(4, "re: world", 8),
        msg(5, "[fwd: HELLO]", 20),
        msg(6, "", 1),
        msg(7, "Re:", 2),
        msg(8, "alone", 9),
    ];
    assert_eq!(by_subject(&msgs), "(6 7)(2 (1)(5))(3 4)(8)");
    assert_eq!(by_subject(&[]), "");
}

#[test]
fn ordered_subject_breaks_date_ties_by_sequence_number() {
    let msgs = [msg(3, "a", 1), msg(1, "a", 1), msg(2, "b", 1), msg(4, "a", 1)];
    assert_eq!(by_subject(&msgs), "(1 (3)(4))(2)");
}

// ------------------------------------------------------------ REFERENCES

#[test]
fn references_follows_reply_chains() {
    let msgs = [msg(1, "hello", 1), refs(msg(2, "Re: hello", 2), &[1]), refs(msg(3, "Re: hello", 3), &[1, 2])];
    assert_eq!(by_references(&msgs), "(1 2 3)");
}

#[test]
fn references_sorts_siblings_by_date() {
    let msgs = [
        msg(1, "a", 1),
        refs(msg(2, "Re: a", 5), &[1]),
        refs(msg(3, "Re: a", 3), &[1]),
        refs(msg(4, "Re: a", 3), &[1]),
        msg(5, "other", 0),
        refs(msg(6, "Re: a", 4), &[1, 3]),
        refs(msg(7, "Re: a", 2), &[1, 3]),
    ];
    assert_eq!(by_references(&msgs), "(5)(1 (3 (7)(6))(4)(2))");
}

#[test]
fn references_makes_dummies_for_missing_messages() {
    // Two replies to a missing message: a dummy holds them.
    let msgs = [refs(msg(1, "x", 2), &[99]), refs(msg(2, "y", 1), &[99]), refs(msg(3, "z", 3), &[98])];
    assert_eq!(by_references(&msgs), "((2)(1))(3)");
    // A missing message between two: the dummy goes, its child moves
    // up.
    let msgs = [msg(1, "a", 1), refs(msg(2, "b", 2), &[1, 77]), refs(msg(3, "c", 3), &[1, 77, 78])];
    assert_eq!(by_references(&msgs), "(1 (2)(3))");
}

#[test]
fn references_merges_threads_by_subject() {
    // A reply without references joins the message it replies to.
    assert_eq!(by_references(&[msg(1, "hello", 1), msg(2, "Re: hello", 2)]), "(1 2)");
    assert_eq!(by_references(&[msg(1, "Re: hello", 1), msg(2, "hello", 2)]), "(2 1)");
    // Two messages that are not replies: a dummy holds both.
    assert_eq!(by_references(&[msg(1, "hello", 1), msg(2, "Hello", 2)]), "((1)(2))");
    // A message joins a dummy with its subject.
    let msgs = [refs(msg(1, "x", 1), &[99]), refs(msg(2, "Re: x", 2), &[99]), msg(3, "x", 3)];
    assert_eq!(by_references(&msgs), "((1)(2)(3))");
    // Two dummies with one subject become one.
    let msgs = [
        refs(msg(1, "x", 1), &[99]),
        refs(msg(2, "x", 3), &[99]),
        refs(msg(3, "x", 2), &[98]),
        refs(msg(4, "x", 4), &[98]),
    ];
    assert_eq!(by_references(&msgs), "((1)(3)(2)(4))");
    // An empty subject merges nothing.
    assert_eq!(by_references(&[msg(1, "", 1), msg(2, "Re:", 2)]), "(1)(2)");
}

#[test]
fn references_makes_no_loop() {
    // 1 says it replies to 2, 2 that it replies to 1.
    let msgs = [refs(msg(1, "a", 1), &[2]), refs(msg(2, "b", 2), &[1])];
    assert_eq!(by_references(&msgs), "(2 1)");
    // A three-way loop within the references.
    let msgs = [refs(msg(1, "a", 1), &[2, 3]), refs(msg(2, "b", 2), &[3, 1]), refs(msg(3, "c", 3), &[1, 2])];
    assert_eq!(by_references(&msgs), "(2 3 1)");
}

#[test]
fn references_ignores_a_self_reference() {
    assert_eq!(by_references(&[refs(msg(1, "a", 1), &[1])]), "(1)");
    assert_eq!(by_references(&[refs(msg(1, "a", 1), &[1, 1])]), "(1)");
    // Named last, its own ID still takes it from the parent the
    // reference before gave it (step 1B), and gives it none.
    assert_eq!(by_references(&[msg(2, "b", 0), refs(msg(1, "a", 1), &[2, 1])]), "(2)(1)");
}

#[test]
fn references_gives_a_duplicate_message_id_to_the_first_message() {
    let mut first = msg(1, "a", 1);
    let mut second = msg(2, "b", 2);
    first.message_id = Some("x@t".into());
    second.message_id = Some("x@t".into());
    let mut reply = msg(3, "c", 3);
    reply.references = ["x@t".to_string()].into();
    // Given out of mailbox order: the lowest sequence number wins.
    let msgs = [second, reply, first];
    assert_eq!(by_references(&msgs), "(1 3)(2)");
}

#[test]
fn references_breaks_a_link_the_message_itself_denies() {
    // 1 says 3 is the parent of 2; 2 says it has no parent (step 1B).
    let msgs = [refs(msg(1, "a", 1), &[3, 2]), msg(2, "b", 2), msg(3, "c", 3)];
    assert_eq!(by_references(&msgs), "(2 1)(3)");
    // 1 says 3 is the parent of 2; 2 says 4 is.
    let msgs = [refs(msg(1, "a", 1), &[3, 2]), refs(msg(2, "b", 2), &[4]), msg(3, "c", 3), msg(4, "d", 4)];
    assert_eq!(by_references(&msgs), "(3)(4 2 1)");
}

#[test]
fn references_keeps_every_message_once() {
    let mut rng = fastrand::Rng::with_seed(5256);
    for _ in 0..200 {
        let n = rng.u32(1..40);
        let msgs: Vec<Summary> = (1..=n)
            .map(|seq| {
                let subject = ["a", "Re: a", "b", "Fwd: b", ""][rng.usize(..5)];
                let mut m = msg(seq, subject, rng.i64(0..5));
                m.references = (0..rng.usize(0..5)).map(|_| format!("{}@t", rng.u32(1..n + 10))).collect();
                if rng.u8(..10) == 0 {
                    m.message_id = Some("dup@t".into());
                }
                m
            })
            .collect();
        let trees = references(&msgs);
        let mut seen = vec![0; msgs.len()];
        let mut stack: Vec<&Tree> = trees.iter().collect();
        while let Some(tree) = stack.pop() {
            if let Some(m) = tree.msg {
                seen[m] += 1;
            } else {
                // Dummies only at the top, with two children or more.
                assert!(trees.iter().any(|t| std::ptr::eq(t, tree)) && tree.children.len() >= 2);
            }
            stack.extend(&tree.children);
        }
        assert!(seen.iter().all(|&count| count == 1), "{seen:?}");
    }
}

#[test]
fn references_handles_deep_threads_on_a_small_stack() {
    // 50,000 messages, each a reply to the one before and naming up to
    // its last 100 ancestors: one chain, as deep as the mailbox.
    let run = || {
        let n = 50_000u32;
        let msgs: Vec<Summary> = (1..=n)
            .map(|seq| {
                refs(msg(seq, "Re: x", i64::from(seq)), &(seq.saturating_sub(100).max(1)..seq).collect::<Vec<_>>())
            })
            .collect();
        let trees = references(&msgs);
        let text = render(&trees, |i| msgs[i].seq);
        let expected: Vec<String> = (1..=n).map(|seq| seq.to_string()).collect();
        assert_eq!(text, format!("({})", expected.join(" ")));
        drop(trees);
        // Each naming its ancestors from the newest: links everywhere.
        let msgs: Vec<Summary> = (1..=n)
            .map(|seq| {
                refs(msg(seq, "y", i64::from(seq)), &(seq.saturating_sub(50).max(1)..seq).rev().collect::<Vec<_>>())
            })
            .collect();
        let text = render(&references(&msgs), |i| msgs[i].seq);
        let mut shown: Vec<u32> =
            text.split(['(', ')', ' ']).filter(|s| !s.is_empty()).map(|s| s.parse().unwrap_or(0)).collect();
        shown.sort_unstable();
        assert!(shown.into_iter().eq(1..=n));
    };
    let small = std::thread::Builder::new().stack_size(256 * 1024).spawn(run).expect("a thread");
    assert!(small.join().is_ok());
}

#[test]
fn forest_finds_roots_as_a_walk_up_does() {
    let mut rng = fastrand::Rng::with_seed(1983);
    let n = 60;
    let mut forest = Forest::new(n);
    let walk = |parent: &[usize], mut node: usize| {
        while parent[node] != NONE {
            node = parent[node];
        }
        node
    };
    for _ in 0..20_000 {
        let (a, b) = (rng.usize(..n), rng.usize(..n));
        match rng.u8(..3) {
            0 => {
                if forest.parent[a] == NONE && walk(&forest.parent, b) != a {
                    assert!(!forest.below(b, a));
                    forest.link(a, b);
                } else if forest.parent[a] == NONE {
                    assert!(forest.below(b, a));
                }
            }
            1 => forest.cut(a),
            _ => assert_eq!(forest.root(a), walk(&forest.parent, a)),
        }
    }
}

// ---------------------------------------------------------------- render

fn node(msg: usize, children: Vec<Tree>) -> Tree {
    Tree { msg: Some(msg), children }
}

fn dummy(children: Vec<Tree>) -> Tree {
    Tree { msg: None, children }
}

#[test]
fn render_follows_the_rfc_examples() {
    // RFC 5256 §4: "(2)(3 6 (4 23)(44 7 96))".
    let trees = [
        Tree::leaf(2),
        node(3, vec![node(6, vec![node(4, vec![Tree::leaf(23)]), node(44, vec![node(7, vec![Tree::leaf(96)])])])]),
    ];
    assert_eq!(render(&trees, |i| i as u32), "(2)(3 6 (4 23)(44 7 96))");
    // RFC 5256 §4: "((3)(5))", a dummy holding two threads.
    assert_eq!(render(&[dummy(vec![Tree::leaf(3), Tree::leaf(5)])], |i| i as u32), "((3)(5))");
}

#[test]
fn render_shows_dummies_only_as_lists() {
    let id = |i: usize| i as u32 * 10;
    assert_eq!(render(&[], id), "");
    // A dummy with nothing under it shows nothing; one with one
    // message shows that message.
    assert_eq!(render(&[dummy(vec![]), dummy(vec![dummy(vec![])]), Tree::leaf(1)], id), "(10)");
    assert_eq!(render(&[dummy(vec![node(1, vec![Tree::leaf(2)])])], id), "(10 20)");
    // Below the top, a dummy gives way to its children.
    assert_eq!(render(&[node(1, vec![dummy(vec![Tree::leaf(2), Tree::leaf(3)])])], id), "(10 (20)(30))");
    assert_eq!(render(&[node(1, vec![dummy(vec![Tree::leaf(2)])])], id), "(10 20)");
    assert_eq!(render(&[dummy(vec![dummy(vec![Tree::leaf(1), Tree::leaf(2)]), Tree::leaf(3)])], id), "((10)(20)(30))");
}
