use super::*;
use rust_decimal_macros::dec;

fn errs(input: &str) -> Vec<(usize, Option<&'static str>)> {
    match RateDeck::parse_csv(input.as_bytes()) {
        Ok(d) => panic!("expected errors, got {} entries", d.len()),
        Err(e) => e.errors.iter().map(|e| (e.line, e.column)).collect(),
    }
}

#[test]
fn csv_without_header_and_optional_columns() {
    let deck = RateDeck::parse_csv(
        b"49,0.0100,0,60,60\n\
          +4930,0.008,0.02,1,1,2026-12-01T00:00:00+01:00,Berlin\n\
          \n\
          # a comment\n\
          44, 0.5 ,0,30,6,,\"UK, all\"\n",
    )
    .unwrap();
    let e = deck.entries();
    assert_eq!(e.len(), 3);
    assert_eq!(e[0].prefix.digits(), "49");
    assert_eq!(e[0].rate_per_minute, dec!(0.0100));
    assert_eq!(e[0].effective_from, None);
    assert_eq!(e[1].prefix.digits(), "4930");
    assert_eq!(e[1].connect_fee, dec!(0.02));
    assert_eq!(
        e[1].effective_from.unwrap().to_rfc3339(),
        "2026-11-30T23:00:00+00:00"
    );
    assert_eq!(e[1].description.as_deref(), Some("Berlin"));
    assert_eq!(e[2].rate_per_minute, dec!(0.5));
    assert_eq!((e[2].first_increment, e[2].next_increment), (30, 6));
    assert_eq!(e[2].description.as_deref(), Some("UK, all"));
}

#[test]
fn csv_header_is_recognised_and_may_reorder_columns() {
    let deck = RateDeck::parse_csv(
        b"next_increment,Prefix,connect_fee,rate_per_minute,first_increment\n6,33,0,0.02,30\n",
    )
    .unwrap();
    let e = &deck.entries()[0];
    assert_eq!(e.prefix.digits(), "33");
    assert_eq!(e.rate_per_minute, dec!(0.02));
    assert_eq!((e.first_increment, e.next_increment), (30, 6));

    let err = RateDeck::parse_csv(b"prefix,rate,connect_fee\n49,1,0\n").unwrap_err();
    assert_eq!(err.errors.len(), 1);
    assert!(err.errors[0].message.contains("unknown column"), "{err}");
    let err =
        RateDeck::parse_csv(b"prefix,rate_per_minute,connect_fee,first_increment\n").unwrap_err();
    assert!(err.errors[0].message.contains("next_increment"), "{err}");
    let err = RateDeck::parse_csv(
        b"prefix,prefix,rate_per_minute,connect_fee,first_increment,next_increment\n",
    )
    .unwrap_err();
    assert!(err.errors[0].message.contains("twice"), "{err}");
}

#[test]
fn every_bad_line_is_reported_with_its_line_and_column() {
    let input =
        "prefix,rate_per_minute,connect_fee,first_increment,next_increment,effective_from\n\
                 49,0.01,0,60,60\n\
                 4x9,0.01,0,60,60\n\
                 44,-0.01,0,60,60\n\
                 45,abc,0,60,60\n\
                 46,0.1234567,0,60,60\n\
                 47,1e3,NaN,60,60\n\
                 48,0.01,0,0,60\n\
                 33,0.01,0,60,-1\n\
                 34,0.01,0,60,60,2026-13-01T00:00:00Z\n\
                 49,0.02,0,60,60\n\
                 35,0.01,0,60\n\
                 36,0.01,0,60,60,,desc,extra\n\
                 ,0.01,0,60,60\n\
                 0049,0.01,0,60,60\n\
                 37,0.01,0,60,3601\n";
    assert_eq!(
        errs(input),
        vec![
            (3, Some("prefix")),
            (4, Some("rate_per_minute")),
            (5, Some("rate_per_minute")),
            (6, Some("rate_per_minute")),
            (7, Some("rate_per_minute")),
            (7, Some("connect_fee")),
            (8, Some("first_increment")),
            (9, Some("next_increment")),
            (10, Some("effective_from")),
            (11, Some("prefix")),
            (12, Some("next_increment")),
            (13, None),
            (14, Some("prefix")),
            (15, Some("prefix")),
            (16, Some("next_increment")),
        ]
    );
    let err = RateDeck::parse_csv(input.as_bytes()).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("line 11, prefix: duplicate prefix 49 (first on line 2)"),
        "{text}"
    );
    assert!(
        text.contains("line 4, rate_per_minute: price is negative"),
        "{text}"
    );
    let json = serde_json::to_value(&err).unwrap();
    assert_eq!(json["errors"][0]["line"], 3);
    assert_eq!(json["errors"][0]["column"], "prefix");
    assert_eq!(json["omitted"], 0);
}

#[test]
fn same_prefix_with_different_dates_is_not_a_duplicate() {
    let deck = RateDeck::parse_csv(
        b"49,0.01,0,60,60\n49,0.02,0,60,60,2027-01-01T00:00:00Z\n49,0.03,0,60,60,2027-02-01T00:00:00Z\n",
    )
    .unwrap();
    assert_eq!(deck.len(), 3);
    let err = RateDeck::parse_csv(
        b"49,0.02,0,60,60,2027-01-01T00:00:00Z\n49,0.03,0,60,60,2027-01-01T01:00:00+01:00\n",
    )
    .unwrap_err();
    assert_eq!(err.errors.len(), 1);
    assert_eq!(err.errors[0].line, 2);
}

#[test]
fn descriptions_are_checked() {
    let long = "x".repeat(MAX_DESCRIPTION_CHARS + 1);
    let input = format!("49,0.01,0,60,60,,{long}\n44,0.01,0,60,60,,\"a\nb\"\n");
    assert_eq!(
        errs(&input),
        vec![(1, Some("description")), (2, Some("description"))]
    );
    let err = RateDeck::parse_csv(b"49,0.01,0,60,60,,\xff\xfe\n").unwrap_err();
    assert_eq!(err.errors[0].column, Some("description"));
    assert!(err.errors[0].message.contains("UTF-8"));
}

#[test]
fn errors_are_capped_but_counted() {
    let input = "x,1,0,60,60\n".repeat(MAX_REPORTED_ERRORS + 250);
    let err = RateDeck::parse_csv(input.as_bytes()).unwrap_err();
    assert_eq!(err.errors.len(), MAX_REPORTED_ERRORS);
    assert_eq!(err.omitted, 250);
    assert_eq!(err.total(), MAX_REPORTED_ERRORS + 250);
    assert_eq!(err.errors.last().map(|e| e.line), Some(MAX_REPORTED_ERRORS));
    assert!(err.to_string().ends_with("and 250 more"));
}

#[test]
fn empty_and_garbage_input() {
    assert_eq!(RateDeck::parse_csv(b"").unwrap().len(), 0);
    assert_eq!(
        RateDeck::parse_csv(b"prefix,rate_per_minute,connect_fee,first_increment,next_increment\n")
            .unwrap()
            .len(),
        0
    );
    assert!(RateDeck::parse_csv(b"\"unterminated,1,0,60,60\n").is_err());
    assert!(RateDeck::parse_csv(&[0u8, 1, 2, 255, b',', b'\n']).is_err());
}

#[test]
fn json_deck() {
    let deck = RateDeck::parse_json(
        br#"[{"prefix":"49","rate_per_minute":"0.0100","connect_fee":"0","first_increment":60,"next_increment":60},
             {"prefix":4930,"rate_per_minute":0.008,"connect_fee":0,"first_increment":1,"next_increment":1,
              "effective_from":"2027-01-01T00:00:00Z","description":"Berlin"}]"#,
    )
    .unwrap();
    assert_eq!(deck.len(), 2);
    assert_eq!(deck.entries()[1].rate_per_minute, dec!(0.008));
    assert_eq!(deck.entries()[1].description.as_deref(), Some("Berlin"));
    let wrapped = RateDeck::parse_json(
        br#"{"entries":[{"prefix":"44","rate_per_minute":"1","connect_fee":"0","first_increment":60,"next_increment":60}]}"#,
    )
    .unwrap();
    assert_eq!(wrapped.len(), 1);

    let err = RateDeck::parse_json(
        br#"[{"prefix":"49","rate_per_minute":"0.01","connect_fee":"0","first_increment":60,"next_increment":60},
             {"prefix":"4x","rate_per_minute":-1,"connect_fee":"0","first_increment":0,"next_increment":60,"bogus":1},
             7,
             {"prefix":"49","rate_per_minute":0.0000001,"connect_fee":"0","first_increment":60,"next_increment":60.5},
             {"prefix":"33","rate_per_minute":"1e3","connect_fee":null,"first_increment":60,"next_increment":60},
             {"prefix":"49","rate_per_minute":"0.02","connect_fee":"0","first_increment":60,"next_increment":60}]"#,
    )
    .unwrap_err();
    let got: Vec<(usize, Option<&str>)> = err.errors.iter().map(|e| (e.line, e.column)).collect();
    assert_eq!(
        got,
        vec![
            (2, None),
            (2, Some("prefix")),
            (2, Some("rate_per_minute")),
            (2, Some("first_increment")),
            (3, None),
            (4, Some("rate_per_minute")),
            (4, Some("next_increment")),
            (5, Some("rate_per_minute")),
            (5, Some("connect_fee")),
            (6, Some("prefix")),
        ]
    );
    let syntax = RateDeck::parse_json(b"[{\"prefix\":\n\"49\",").unwrap_err();
    assert_eq!(syntax.errors.len(), 1);
    assert!(syntax.errors[0].message.starts_with("invalid JSON"));
    assert!(RateDeck::parse_json(b"\"x\"").is_err());
    assert!(RateDeck::parse_json(br#"{"entries":[], "x":1}"#).is_err());
}

#[test]
fn delta_parse_and_apply() {
    let deck = RateDeck::parse_csv(
        b"49,0.01,0,60,60\n4930,0.02,0,60,60\n4930,0.03,0,60,60,2027-01-01T00:00:00Z\n44,0.05,0,60,60\n",
    )
    .unwrap();
    let delta = RateDelta::parse_json(
        br#"{"upsert":[{"prefix":"49","rate_per_minute":"0.009","connect_fee":"0","first_increment":1,"next_increment":1},
                       {"prefix":"33","rate_per_minute":"0.02","connect_fee":"0","first_increment":60,"next_increment":60}],
             "delete":["4930"]}"#,
    )
    .unwrap();
    assert_eq!(delta.delete.len(), 1);
    let new = deck.apply(&delta);
    let mut got: Vec<(String, Decimal)> = new
        .entries()
        .iter()
        .map(|e| (e.prefix.to_string(), e.rate_per_minute))
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            ("33".into(), dec!(0.02)),
            ("44".into(), dec!(0.05)),
            ("49".into(), dec!(0.009)),
        ]
    );
    assert!(RateDeck::from_entries(new.into_entries()).is_ok());

    let err = RateDelta::parse_json(
        br#"{"upsert":[{"prefix":"49","rate_per_minute":"0.009","connect_fee":"0","first_increment":1,"next_increment":1}],
             "delete":["49","x","49"],"other":[]}"#,
    )
    .unwrap_err();
    let got: Vec<(usize, Option<&str>)> = err.errors.iter().map(|e| (e.line, e.column)).collect();
    assert!(got.contains(&(1, None)), "{err}");
    assert!(got.contains(&(2, Some("delete"))), "{err}");
    assert!(got.contains(&(3, Some("delete"))), "{err}");
    assert!(got.contains(&(1, Some("prefix"))), "{err}");
    assert!(RateDelta::parse_json(b"[]").is_err());
    assert!(RateDelta::parse_json(br#"{"upsert":{}}"#).is_err());
    assert_eq!(RateDelta::parse_json(b"{}").unwrap(), RateDelta::default());
}

#[test]
fn from_entries_rechecks_rules() {
    let good = RateDeck::parse_csv(b"49,0.01,0,60,60\n").unwrap();
    let mut entries = good.into_entries();
    entries.push(entries[0].clone());
    entries[0].rate_per_minute = dec!(-1);
    entries[0].first_increment = 0;
    let err = RateDeck::from_entries(entries).unwrap_err();
    let got: Vec<(usize, Option<&str>)> = err.errors.iter().map(|e| (e.line, e.column)).collect();
    assert_eq!(
        got,
        vec![
            (1, Some("rate_per_minute")),
            (1, Some("first_increment")),
            (2, Some("prefix"))
        ]
    );
}

#[test]
fn synthetic_decks_parse_back() {
    let plan = synth::PrefixPlan::generate(2_000, 1);
    assert!(plan.prefixes.len() >= 1_500, "{}", plan.prefixes.len());
    let decks = plan.provider_decks(3, 500, 2);
    assert!(decks.iter().all(|d| d.len() == 500));
    for d in &decks {
        let parsed = RateDeck::parse_csv(&synth::deck_csv(d)).unwrap();
        assert_eq!(parsed.entries(), &d[..]);
    }
    let numbers = plan.numbers(100, Some("49"), 3);
    assert_eq!(numbers.len(), 100);
    assert!(numbers.iter().all(|n| n.digits().starts_with("49")));
}

#[test]
fn effective_rates_are_looked_up_by_longest_prefix() {
    let deck = RateDeck::parse_csv(
        b"49,0.02,0,60,60,,\n4930,0.01,0,30,6,,\n4930,0.009,0,30,6,2027-01-01T00:00:00Z,\n4989,0.5,0,1,1,2030-01-01T00:00:00Z,\n",
    )
    .unwrap();
    let at = |s: &str| s.parse::<chrono::DateTime<chrono::Utc>>().unwrap();
    let number = |s: &str| s.parse::<crate::number::E164>().unwrap();
    let now = deck.effective_at(at("2026-06-01T00:00:00Z"));
    assert_eq!(now.len(), 2, "the Munich prefix has only a future entry");
    let berlin = now.lookup(&number("+4930123456")).unwrap();
    assert_eq!(berlin.rate_per_minute.to_string(), "0.01");
    // Only a future entry for 4989: the number falls back to 49.
    let munich = now.lookup(&number("+4989123456")).unwrap();
    assert_eq!(munich.prefix.digits(), "49");
    assert!(now.lookup(&number("+33123456789")).is_none());
    let later = deck.effective_at(at("2027-02-01T00:00:00Z"));
    assert_eq!(
        later
            .lookup(&number("+4930123456"))
            .unwrap()
            .rate_per_minute
            .to_string(),
        "0.009"
    );
}
