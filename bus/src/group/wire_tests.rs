use std::time::Duration;

use super::*;
use crate::consume::Verdict;
use crate::event::Encoding;
use crate::headers::Headers;

fn offer() -> JobOffer {
    let mut headers = Headers::new();
    headers.insert("traceparent", "00-abc-def-01");
    JobOffer {
        group: "billing".into(),
        item: "9fc1".into(),
        attempt: 2,
        epoch: 3,
        ack_wait: Duration::from_secs(30),
        publisher: Some("orders@localhost/o1".into()),
        payload: RawPayload {
            topic: "orders.created".into(),
            encoding: Encoding::Json,
            version: 1,
            data: br#"{"id":1}"#.to_vec(),
            headers,
        },
    }
}

#[test]
fn a_job_goes_through_xml_unchanged() {
    let job = offer();
    assert_eq!(JobOffer::from_element(&job.to_element(), 1 << 20), Ok(job));
}

#[test]
fn bad_jobs_are_typed_errors() {
    let parse = |xml: &str| JobOffer::from_element(&xml.parse::<Element>().unwrap(), 1 << 20);
    assert_eq!(parse("<job xmlns='urn:other'/>"), Err(WireError::NotAJob));
    let base = "xmlns='urn:xbus:group:0' item='i' attempt='1' epoch='1' ack-wait-ms='5'";
    assert!(matches!(
        parse(&format!("<job {base}/>")),
        Err(WireError::BadAttribute { name: "group", .. })
    ));
    assert!(matches!(
        parse(&format!("<job {base} group='g'/>")),
        Err(WireError::Payload(DecodeError::MissingPayload))
    ));
    let long = "g".repeat(MAX_GROUP_LEN + 1);
    assert!(matches!(
        parse(&format!("<job {base} group='{long}'/>")),
        Err(WireError::BadAttribute { name: "group", .. })
    ));
    let wrong = "xmlns='urn:xbus:group:0' group='g' item='i' attempt='x' epoch='1' ack-wait-ms='5'";
    assert!(matches!(
        parse(&format!("<job {wrong}/>")),
        Err(WireError::BadAttribute {
            name: "attempt",
            ..
        })
    ));
    // The event's size limit holds inside a job too.
    let job = offer();
    assert!(matches!(
        JobOffer::from_element(&job.to_element(), 4),
        Err(WireError::Payload(_))
    ));
}

#[test]
fn answers_read_back_as_what_the_instance_meant() {
    assert_eq!(outcome(&Ok(None)), Outcome::Settled(Verdict::Ack));
    assert_eq!(
        outcome(&Err(nak_error(Some(Duration::from_millis(250)), "busy"))),
        Outcome::Settled(Verdict::Nak {
            delay: Some(Duration::from_millis(250)),
            reason: "busy".into()
        })
    );
    assert_eq!(
        outcome(&Err(nak_error(None, "x"))),
        Outcome::Settled(Verdict::Nak {
            delay: None,
            reason: "x".into()
        })
    );
    assert_eq!(
        outcome(&Err(term_error("poison"))),
        Outcome::Settled(Verdict::Term {
            reason: "poison".into()
        })
    );
    assert_eq!(
        outcome(&Err(stale_epoch_error(9))),
        Outcome::StaleEpoch { epoch: 9 }
    );
    let gone = StanzaError::new(
        ErrorType::Cancel,
        DefinedCondition::ServiceUnavailable,
        "en",
        "",
    );
    assert_eq!(
        outcome(&Err(gone)),
        Outcome::Failed {
            gone: true,
            reason: String::new()
        }
    );
}

#[test]
fn progress_names_the_group_and_item() {
    let element = progress("billing", "9fc1");
    assert_eq!(read_progress(&element), Some(("billing", "9fc1")));
    let other: Element = "<progress xmlns='urn:other' group='g' item='i'/>"
        .parse()
        .unwrap();
    assert_eq!(read_progress(&other), None);
}

#[test]
fn a_claim_reads_back_and_bad_ones_are_typed_errors() {
    let claim = claim("billing", "orders.created", 4);
    assert_eq!(read_claim(&claim), Ok(("billing", "orders.created", 4)));
    let bad: Element = "<claim xmlns='urn:xbus:group:0' group='g' topic='t' epoch='x'/>"
        .parse()
        .unwrap();
    assert!(matches!(
        read_claim(&bad),
        Err(WireError::BadAttribute { name: "epoch", .. })
    ));
    let other: Element = "<job xmlns='urn:xbus:group:0'/>".parse().unwrap();
    assert_eq!(read_claim(&other), Err(WireError::NotAClaim));
}

#[test]
fn a_report_reads_back_capped() {
    let ids: Vec<String> = (0..MAX_REPORT + 5).map(|i| format!("{i:032x}")).collect();
    let element = report("billing", "orders", ids.iter().map(String::as_str));
    let (group, topic, items) = read_report(&element).unwrap();
    assert_eq!((group, topic), ("billing", "orders"));
    assert_eq!(items.len(), MAX_REPORT);
    assert_eq!(items[0], ids[0]);
    let other: Element = "<claim xmlns='urn:xbus:group:0'/>".parse().unwrap();
    assert_eq!(read_report(&other), Err(WireError::NotAReport));
}
