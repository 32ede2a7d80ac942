//! Tests of the command line: what each command asks ftfwd.

use super::*;
use clap::CommandFactory;

fn req(args: &[&str]) -> Result<Request, String> {
    let cli = Cli::try_parse_from(std::iter::once("ftfwctl").chain(args.iter().copied()))
        .map_err(|e| e.to_string())?;
    build_request(cli.cmd)
}

#[test]
fn cli_is_consistent() {
    Cli::command().debug_assert();
}

#[test]
fn flows_add_takes_what_conntrack_i_takes() {
    let add = |extra: &str| {
        let line = format!(
            "flows add -s 192.0.2.1 -d 198.51.100.2 --sport 5000 --dport 5001 -t 60 {extra}"
        );
        req(&line.split_whitespace().collect::<Vec<_>>())
    };
    let Request::FlowsAdd { flow } = add(
        "-p sctp --state COOKIE_ECHOED --orig-vtag 0x12345678 --reply-vtag 9 \
         --label 1,100 --mark 0xffffffff",
    )
    .unwrap() else {
        panic!()
    };
    assert_eq!(flow.mark, u32::MAX);
    assert_eq!(flow.vtags, Some([0x1234_5678, 9]));
    assert_eq!(flow.labels, [1, 100]);
    let st = FlowState::try_from(flow).unwrap();
    assert_eq!(st.extras.sctp, Some((3, 0x1234_5678, 9)));
    // SCTP defaults to ESTABLISHED like TCP; decimal marks still work.
    let Request::FlowsAdd { flow } = add("-p sctp -m 42").unwrap() else {
        panic!()
    };
    assert_eq!(
        (flow.state.as_deref(), flow.mark),
        (Some("ESTABLISHED"), 42)
    );
    for bad in ["--mark 0xfffffffff", "--mark -1", "--label 128"] {
        assert!(add(&format!("-p tcp {bad}")).is_err(), "{bad}");
    }
}

#[test]
fn parses_requests() {
    assert_eq!(req(&["status"]).unwrap(), Request::Status);
    assert_eq!(
        req(&["--json", "rules", "reload"]).unwrap(),
        Request::RulesReload
    );
    let r = req(&[
        "flows",
        "list",
        "-p",
        "tcp",
        "-s",
        "192.0.2.1",
        "--dport",
        "80",
        "--state",
        "established",
        "-w",
        "2",
        "-m",
        "7",
    ])
    .unwrap();
    let Request::FlowsList {
        filter,
        limit: None,
    } = r
    else {
        panic!("{r:?}")
    };
    assert_eq!(filter.proto, Some(6));
    assert_eq!(filter.src, Some("192.0.2.1".parse().unwrap()));
    assert_eq!(filter.state, Some(TcpState::Established));
    assert_eq!((filter.zone, filter.mark), (Some(2), Some(7)));
    let r = req(&[
        "flows",
        "add",
        "-p",
        "tcp",
        "-s",
        "192.0.2.1",
        "-d",
        "192.0.2.2",
        "--sport",
        "1",
        "--dport",
        "2",
        "--timeout",
        "60",
        "--status-bits",
        "SEEN_REPLY,ASSURED",
    ])
    .unwrap();
    let Request::FlowsAdd { flow } = r else {
        panic!()
    };
    assert_eq!(flow.state.as_deref(), Some("ESTABLISHED"));
    assert_eq!(flow.status_names, ["SEEN_REPLY", "ASSURED"]);
    assert!(req(&[
        "flows",
        "add",
        "-p",
        "udp",
        "-s",
        "192.0.2.1",
        "-d",
        "2001:db8::1",
        "--sport",
        "1",
        "--dport",
        "2",
        "--timeout",
        "5"
    ])
    .unwrap_err()
    .contains("different families"));
    assert!(req(&["flows", "list", "-p", "nope"]).is_err());
}

#[test]
fn parses_sync_requests() {
    assert_eq!(req(&["sync", "status"]).unwrap(), Request::SyncStatus);
    assert_eq!(req(&["commit"]).unwrap(), Request::Commit);
    assert_eq!(
        req(&["notify", "MASTER"]).unwrap(),
        Request::Notify {
            state: NotifyState::Master
        }
    );
    assert!(req(&["notify", "primary"]).is_err());
    assert_eq!(req(&["resync"]).unwrap(), Request::Resync);
    assert_eq!(req(&["neighbors"]).unwrap(), Request::Neighbors);
    assert_eq!(req(&["routes", "--json"]).unwrap(), Request::Routes);
    assert_eq!(req(&["routes", "show"]).unwrap(), Request::Routes);
    assert_eq!(req(&["routes", "reload"]).unwrap(), Request::RoutesReload);
    assert_eq!(req(&["flush", "external"]).unwrap(), Request::FlushExternal);
    assert_eq!(req(&["expect", "list"]).unwrap(), Request::ExpectList);
    assert_eq!(
        req(&["expect", "external"]).unwrap(),
        Request::ExpectExternal
    );
    let Request::ExternalList { filter, limit } =
        req(&["external", "list", "-p", "udp", "--limit", "5"]).unwrap()
    else {
        panic!()
    };
    assert_eq!((filter.proto, limit), (Some(17), Some(5)));
}

#[test]
fn nat_options_build_the_reply_tuple() {
    let r = req(&[
        "flows",
        "add",
        "-p",
        "tcp",
        "-s",
        "192.0.2.2",
        "-d",
        "198.51.100.10",
        "--sport",
        "40001",
        "--dport",
        "443",
        "-t",
        "300",
        "--src-nat",
        "203.0.113.5:61000",
    ])
    .unwrap();
    let Request::FlowsAdd { flow } = r else {
        panic!()
    };
    let st = FlowState::try_from(flow).unwrap();
    let reply = st.extras.reply.expect("NAT reply tuple");
    assert_eq!(reply.dst_ip(), "203.0.113.5".parse::<IpAddr>().unwrap());
    assert_eq!((reply.src_port, reply.dst_port), (443, 61000));
    assert_ne!(st.status & ftfw_dataplane::flow::status::SRC_NAT, 0);
    let r = req(&[
        "flows",
        "add",
        "-p",
        "tcp",
        "-s",
        "192.0.2.2",
        "-d",
        "203.0.113.5",
        "--sport",
        "40002",
        "--dport",
        "8080",
        "-t",
        "300",
        "--dst-nat",
        "192.0.2.99:80",
    ])
    .unwrap();
    let Request::FlowsAdd { flow } = r else {
        panic!()
    };
    let st = FlowState::try_from(flow).unwrap();
    let reply = st.extras.reply.expect("NAT reply tuple");
    assert_eq!(reply.src_ip(), "192.0.2.99".parse::<IpAddr>().unwrap());
    assert_eq!((reply.src_port, reply.dst_port), (80, 40002));
    assert!(parse_nat("nope").is_err());
    assert_eq!(
        parse_nat("[2001:db8::1]:80").unwrap(),
        ("2001:db8::1".parse().unwrap(), Some(80))
    );
}
