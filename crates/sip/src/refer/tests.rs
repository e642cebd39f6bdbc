use super::*;

fn refer(refer_to: &str) -> Request {
    let text = format!(
        "REFER sip:palaver@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bK1\r\n\
         From: <sip:+14255550199@127.0.0.1>;tag=a\r\nTo: <sip:+14255550100@127.0.0.1>;tag=b\r\n\
         Call-ID: c1\r\nCSeq: 2 REFER\r\nRefer-To: {refer_to}\r\nContent-Length: 0\r\n\r\n"
    );
    Request::try_from(text.as_str()).expect("a REFER")
}

#[test]
fn refer_to_an_owned_number_is_its_route_and_any_other_number_is_dialled_out() {
    let mut numbers = HashMap::new();
    numbers.insert("+14255550100".to_owned(), Route::User("8:orgid:u1".to_owned()));
    numbers.insert("+14255550101".to_owned(), Route::Queue("28:orgid:q".to_owned()));
    numbers.insert("+14255550102".to_owned(), Route::Meeting("m".to_owned()));
    assert_eq!(refer_target(&numbers, &refer("<sip:+14255550100@127.0.0.1>")).as_deref(), Some("8:orgid:u1"));
    assert_eq!(refer_target(&numbers, &refer("<sip:14255550101@sbc;user=phone>")).as_deref(), Some("28:orgid:q"));
    assert_eq!(refer_target(&numbers, &refer("sip:+14255550123@127.0.0.1")).as_deref(), Some("4:+14255550123"));
    assert_eq!(refer_target(&numbers, &refer("<tel:+1-425-555-0124>")).as_deref(), Some("4:+14255550124"));
    assert_eq!(refer_target(&numbers, &refer("<sip:alice@example.com>")), None);
}

#[test]
fn sipfrag_bodies_carry_the_status_line() {
    assert_eq!(sipfrag(&StatusCode::Trying), "SIP/2.0 100 Trying\r\n");
    assert_eq!(sipfrag(&StatusCode::OK), "SIP/2.0 200 OK\r\n");
    assert_eq!(sipfrag(&StatusCode::BusyHere), "SIP/2.0 486 Busy Here\r\n");
}
