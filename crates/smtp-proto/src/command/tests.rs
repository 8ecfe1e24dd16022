use super::*;

fn parse(line: &str) -> Result<Command, Reply> {
    Command::parse(line.as_bytes())
}

fn ok(line: &str) -> Command {
    parse(line).unwrap_or_else(|r| panic!("{line:?}: {r}"))
}

/// The reply to a bad line, as it goes on the wire (without CRLF).
fn err(line: &str) -> String {
    match parse(line) {
        Ok(c) => panic!("{line:?} parsed as {c:?}"),
        Err(r) => r.to_string(),
    }
}

fn addr(local: &str, domain: &str) -> Address {
    Address { local: local.into(), domain: domain.into() }
}

#[test]
fn simple_verbs_any_case() {
    assert_eq!(ok("DATA"), Command::Data);
    assert_eq!(ok("data"), Command::Data);
    assert_eq!(ok("rSeT"), Command::Rset);
    assert_eq!(ok("QUIT"), Command::Quit);
    assert_eq!(ok("STARTTLS"), Command::StartTls);
    assert_eq!(ok("NOOP"), Command::Noop);
    assert_eq!(ok("NOOP anything at all"), Command::Noop);
    assert_eq!(ok("HELP"), Command::Help);
    assert_eq!(ok("HELP MAIL"), Command::Help);
    assert_eq!(ok("VRFY someone"), Command::Vrfy("someone".into()));
    assert_eq!(ok("EXPN staff"), Command::Expn("staff".into()));
}

#[test]
fn unknown_and_empty_and_invalid_utf8() {
    assert_eq!(err(""), "500 5.5.2 Error: command not recognized");
    assert_eq!(err("FOO bar"), "500 5.5.2 Error: command not recognized");
    assert_eq!(err(" MAIL FROM:<a@b>"), "500 5.5.2 Error: command not recognized");
    assert_eq!(err("MAILFROM:<a@b>"), "500 5.5.2 Error: command not recognized");
    let r = Command::parse(b"MAIL FROM:<\xff@b>").expect_err("invalid utf-8");
    assert_eq!(r.to_string(), "500 5.5.2 Error: invalid UTF-8 in command");
}

#[test]
fn argument_rules_of_simple_verbs() {
    assert_eq!(err("DATA x"), "501 5.5.4 Syntax: DATA");
    assert_eq!(ok("RSET "), Command::Rset);
    assert_eq!(ok("QUIT \t"), Command::Quit);
    assert_eq!(err("QUIT now"), "501 5.5.4 Syntax: QUIT");
    assert_eq!(err("STARTTLS x"), "501 5.5.4 Syntax: STARTTLS");
    assert_eq!(err("VRFY"), "501 5.5.4 Syntax: VRFY user");
    assert_eq!(err("VRFY "), "501 5.5.4 Syntax: VRFY user");
    assert_eq!(err("EXPN"), "501 5.5.4 Syntax: EXPN list");
}

#[test]
fn ehlo_and_helo() {
    assert_eq!(ok("EHLO client.example"), Command::Ehlo("client.example".into()));
    assert_eq!(ok("ehlo [192.0.2.7]"), Command::Ehlo("[192.0.2.7]".into()));
    assert_eq!(ok("EHLO [IPv6:2001:db8::7]"), Command::Ehlo("[IPv6:2001:db8::7]".into()));
    assert_eq!(ok("HELO client"), Command::Helo("client".into()));
    assert_eq!(err("EHLO"), "501 5.5.4 Syntax: EHLO hostname");
    assert_eq!(err("EHLO "), "501 5.5.4 Syntax: EHLO hostname");
    assert_eq!(err("EHLO a b"), "501 5.5.4 Syntax: EHLO hostname");
    // Lenient like Postfix: one visible word is enough.
    assert_eq!(ok("EHLO WIN_HOST"), Command::Ehlo("WIN_HOST".into()));
    assert_eq!(ok("EHLO exämple.com"), Command::Ehlo("exämple.com".into()));
    assert_eq!(err("EHLO a\x01b"), "501 5.5.4 Syntax: EHLO hostname");
    assert_eq!(err(&format!("EHLO {}", "h".repeat(256))), "501 5.5.4 Syntax: EHLO hostname");
    assert_eq!(err("HELO"), "501 5.5.4 Syntax: HELO hostname");
}

#[test]
fn mail_paths() {
    assert_eq!(ok("MAIL FROM:<a@b.example>"), Command::Mail(Some(addr("a", "b.example")), MailParams::default()));
    assert_eq!(ok("mail from:<>"), Command::Mail(None, MailParams::default()));
    // Quirk: spaces before the path.
    assert_eq!(ok("MAIL FROM: <a@b>"), Command::Mail(Some(addr("a", "b")), MailParams::default()));
    assert_eq!(ok("MAIL FROM:   <>"), Command::Mail(None, MailParams::default()));
    // Source routes are dropped.
    assert_eq!(ok("MAIL FROM:<@x.example:a@b>"), ok("MAIL FROM:<a@b>"));
    // ">" inside a quoted local part does not end the path.
    assert_eq!(
        ok(r#"MAIL FROM:<"a>b"@c> SIZE=1"#),
        Command::Mail(Some(addr("a>b", "c")), MailParams { size: Some(1), ..Default::default() })
    );
    for bad in [
        "MAIL",
        "MAIL FROM:",
        "MAIL FROM:a@b",
        "MAIL FROM:<a@b",
        "MAIL TO:<a@b>",
        "MAIL FROM <a@b>",
        "MAIL FROM:<a@b>SIZE=1",
        "MAIL  FROM:<a@b>",
    ] {
        assert_eq!(err(bad), "501 5.5.4 Syntax: MAIL FROM:<address>", "{bad}");
    }
    assert_eq!(err("MAIL FROM:<a@@b>"), "501 5.1.7 Bad sender address syntax");
    assert_eq!(err("MAIL FROM:<Postmaster>"), "501 5.1.7 Bad sender address syntax");
    let long = format!("MAIL FROM:<{}@b>", "a".repeat(65));
    assert_eq!(err(&long), "501 5.1.7 Bad sender address syntax");
}

#[test]
fn mail_utf8_address_is_governed_by_its_own_line() {
    // RFC 6531 §3.5
    assert_eq!(err("MAIL FROM:<jö@b>"), "553 5.6.7 Non-ASCII address requires SMTPUTF8");
    let params = MailParams { smtputf8: true, ..Default::default() };
    assert_eq!(ok("MAIL FROM:<jö@b> SMTPUTF8"), Command::Mail(Some(addr("jö", "b")), params));
    assert_eq!(ok("MAIL FROM:<jö@b> smtputf8"), ok("MAIL FROM:<jö@b> SMTPUTF8"));
}

#[test]
fn mail_parameters() {
    let c = ok("MAIL FROM:<a@b> SIZE=1000 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=QQ+2B1 AUTH=<>");
    let want = MailParams {
        size: Some(1000),
        body: Some(BodyType::EightBitMime),
        smtputf8: true,
        ret: Some(Ret::Hdrs),
        envid: Some("QQ+1".into()),
        auth: Some("<>".into()),
    };
    assert_eq!(c, Command::Mail(Some(addr("a", "b")), want));
    let c = ok("MAIL FROM:<> body=7bit ret=full auth=u+40example.com");
    let want = MailParams {
        body: Some(BodyType::SevenBit),
        ret: Some(Ret::Full),
        auth: Some("u@example.com".into()),
        ..Default::default()
    };
    assert_eq!(c, Command::Mail(None, want));
    let max = format!("MAIL FROM:<> SIZE={}", u64::MAX);
    assert!(matches!(ok(&max), Command::Mail(None, MailParams { size: Some(u64::MAX), .. })));
}

#[test]
fn mail_parameter_errors() {
    let cases = [
        ("SIZE=", "501 5.5.4 Syntax: parameters are KEYWORD[=value] separated by one space"),
        ("=1", "501 5.5.4 Syntax: parameters are KEYWORD[=value] separated by one space"),
        ("-X=1", "501 5.5.4 Syntax: parameters are KEYWORD[=value] separated by one space"),
        ("SIZE=1=2", "501 5.5.4 Syntax: parameters are KEYWORD[=value] separated by one space"),
        ("SIZE=abc", "501 5.5.4 Syntax: SIZE=octets"),
        ("SIZE", "501 5.5.4 Syntax: SIZE=octets"),
        ("SIZE=-1", "501 5.5.4 Syntax: SIZE=octets"),
        ("SIZE=18446744073709551616", "501 5.5.4 Syntax: SIZE=octets"),
        ("SIZE=1 SIZE=2", "501 5.5.4 Syntax: SIZE given more than once"),
        ("BODY=BINARYMIME", "555 5.5.4 Unsupported parameter: BODY=BINARYMIME"),
        ("BODY=8bit", "501 5.5.4 Syntax: BODY=7BIT|8BITMIME"),
        ("BODY=7BIT BODY=7BIT", "501 5.5.4 Syntax: BODY given more than once"),
        ("SMTPUTF8=yes", "501 5.5.4 Syntax: SMTPUTF8 (without a value)"),
        ("SMTPUTF8 SMTPUTF8", "501 5.5.4 Syntax: SMTPUTF8 given more than once"),
        ("RET=ALL", "501 5.5.4 Syntax: RET=FULL|HDRS"),
        ("RET=FULL RET=HDRS", "501 5.5.4 Syntax: RET given more than once"),
        ("ENVID=a+2", "501 5.5.4 Syntax: ENVID=xtext (at most 100 characters)"),
        ("ENVID=a+2b", "501 5.5.4 Syntax: ENVID=xtext (at most 100 characters)"),
        ("ENVID=a+0D+0A", "501 5.5.4 Syntax: ENVID=xtext (at most 100 characters)"),
        ("ENVID=é", "501 5.5.4 Syntax: parameters are KEYWORD[=value] separated by one space"),
        ("AUTH=+00", "501 5.5.4 Syntax: AUTH=xtext|<>"),
        ("AUTH", "501 5.5.4 Syntax: AUTH=xtext|<>"),
        ("XFOO=1", "555 5.5.4 Unsupported parameter: XFOO"),
        ("notify=NEVER", "555 5.5.4 Unsupported parameter: NOTIFY"),
    ];
    for (params, reply) in cases {
        assert_eq!(err(&format!("MAIL FROM:<a@b> {params}")), reply, "{params}");
    }
    // RFC 3461 §4.4: at most 100 characters.
    let envid = "x".repeat(100);
    let c = ok(&format!("MAIL FROM:<> ENVID={envid}"));
    assert!(matches!(c, Command::Mail(None, MailParams { envid: Some(e), .. }) if e == envid));
    let envid = "x".repeat(101);
    assert_eq!(err(&format!("MAIL FROM:<> ENVID={envid}")), "501 5.5.4 Syntax: ENVID=xtext (at most 100 characters)");
}

#[test]
fn rcpt_paths_and_postmaster() {
    assert_eq!(ok("RCPT TO:<a@b>"), Command::Rcpt(addr("a", "b"), RcptParams::default()));
    assert_eq!(ok("rcpt to: <a@b>"), Command::Rcpt(addr("a", "b"), RcptParams::default()));
    // RFC 5321 §4.5.1
    for pm in ["RCPT TO:<Postmaster>", "RCPT TO:<postmaster>", "RCPT TO:<POSTMASTER>"] {
        assert_eq!(ok(pm), Command::Rcpt(addr("Postmaster", ""), RcptParams::default()));
    }
    assert_eq!(ok("RCPT TO:<postmaster@b>"), Command::Rcpt(addr("postmaster", "b"), RcptParams::default()));
    assert_eq!(err("RCPT TO:<>"), "501 5.1.3 Bad recipient address syntax");
    assert_eq!(err("RCPT TO:<abuse>"), "501 5.1.3 Bad recipient address syntax");
    assert_eq!(err("RCPT TO:a@b"), "501 5.5.4 Syntax: RCPT TO:<address>");
    assert_eq!(err("RCPT FROM:<a@b>"), "501 5.5.4 Syntax: RCPT TO:<address>");
    assert_eq!(err("RCPT TO:<jö@b>"), "553 5.6.7 Non-ASCII address requires SMTPUTF8");
    let c = Command::parse_with("RCPT TO:<jö@b>".as_bytes(), true).expect("smtputf8");
    assert_eq!(c, Command::Rcpt(addr("jö", "b"), RcptParams::default()));
}

#[test]
fn rcpt_parameters() {
    let c = ok("RCPT TO:<a@b> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;a+2Bb@b");
    let notify = Notify { success: true, delay: true, ..Default::default() };
    let want = RcptParams { notify: Some(notify), orcpt: Some("rfc822;a+b@b".into()) };
    assert_eq!(c, Command::Rcpt(addr("a", "b"), want));
    let c = ok("RCPT TO:<a@b> notify=never");
    let want = RcptParams { notify: Some(Notify { never: true, ..Default::default() }), orcpt: None };
    assert_eq!(c, Command::Rcpt(addr("a", "b"), want));
    let c = ok("RCPT TO:<a@b> NOTIFY=failure");
    assert!(matches!(c, Command::Rcpt(_, RcptParams { notify: Some(Notify { failure: true, .. }), .. })));

    let notify_err = "501 5.5.4 Syntax: NOTIFY=NEVER or NOTIFY=SUCCESS,FAILURE,DELAY";
    for bad in ["NEVER,SUCCESS", "SUCCESS,NEVER", "SUCCESS,", "SUCCESS,SUCCESS", "SOMETIMES"] {
        assert_eq!(err(&format!("RCPT TO:<a@b> NOTIFY={bad}")), notify_err, "{bad}");
    }
    assert_eq!(err("RCPT TO:<a@b> NOTIFY"), notify_err);
    let orcpt_err = "501 5.5.4 Syntax: ORCPT=addr-type;xtext";
    for bad in ["rfc822", ";a@b", "rfc822;", "rf c822;a", "rfc822;a+0Ab", "(x);a"] {
        assert_eq!(err(&format!("RCPT TO:<a@b> ORCPT={bad}")), orcpt_err, "{bad}");
    }
    // RFC 3461 §4.2: 500 characters.
    let orcpt = format!("rfc822;{}", "a".repeat(493));
    assert!(parse(&format!("RCPT TO:<a@b> ORCPT={orcpt}")).is_ok());
    let orcpt = format!("rfc822;{}", "a".repeat(494));
    assert_eq!(err(&format!("RCPT TO:<a@b> ORCPT={orcpt}")), orcpt_err);
    assert_eq!(err("RCPT TO:<a@b> NOTIFY=NEVER NOTIFY=NEVER"), "501 5.5.4 Syntax: NOTIFY given more than once");
    assert_eq!(err("RCPT TO:<a@b> SIZE=10"), "555 5.5.4 Unsupported parameter: SIZE");
}

#[test]
fn bdat() {
    assert_eq!(ok("BDAT 0 LAST"), Command::Bdat { size: 0, last: true });
    assert_eq!(ok("bdat 1000 last"), Command::Bdat { size: 1000, last: true });
    assert_eq!(ok("BDAT 42"), Command::Bdat { size: 42, last: false });
    for bad in
        ["BDAT", "BDAT ", "BDAT x", "BDAT -1", "BDAT 1 FIRST", "BDAT 1 LAST x", "BDAT +1", "BDAT 99999999999999999999"]
    {
        assert_eq!(err(bad), "501 5.5.4 Syntax: BDAT size [LAST]", "{bad}");
    }
}

#[test]
fn auth() {
    assert_eq!(ok("AUTH plain"), Command::Auth { mechanism: "PLAIN".into(), initial: None });
    assert_eq!(
        ok("AUTH PLAIN AHVAcA=="),
        Command::Auth { mechanism: "PLAIN".into(), initial: Some("AHVAcA==".into()) }
    );
    assert_eq!(ok("AUTH LOGIN ="), Command::Auth { mechanism: "LOGIN".into(), initial: Some("=".into()) });
    assert_eq!(ok("AUTH X-UNKNOWN_1"), Command::Auth { mechanism: "X-UNKNOWN_1".into(), initial: None });
    assert_eq!(ok("AUTH PLAIN "), Command::Auth { mechanism: "PLAIN".into(), initial: None });
    for bad in ["AUTH", "AUTH ", "AUTH PLAIN a b", "AUTH P:LAIN", "AUTH ABCDEFGHIJKLMNOPQRSTU"] {
        assert_eq!(err(bad), "501 5.5.4 Syntax: AUTH mechanism [initial-response]", "{bad}");
    }
}

#[test]
fn xtext() {
    assert_eq!(params::decode_xtext("abc+2B+3D"), Some("abc+=".into()));
    assert_eq!(params::decode_xtext(""), Some(String::new()));
    assert_eq!(params::decode_xtext("+20"), Some(" ".into()));
    assert_eq!(params::decode_xtext("+7F"), None);
    assert_eq!(params::decode_xtext("a=b"), None);
    assert_eq!(params::decode_xtext("+"), None);
    assert_eq!(params::decode_xtext("+4"), None);
    assert_eq!(params::decode_xtext("+4g"), None);
}
