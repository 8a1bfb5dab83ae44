//! weir-loadgen against an in-process `weir-server` on 127.0.0.1.

use std::net::UdpSocket;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use weir_loadgen::{run, Report, Scenario};
use weir_signaling::{Config, Limits, Server};

/// A UDP port that was free a moment ago (the media worker binds it).
fn free_udp_port() -> u16 {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind a UDP port");
    s.local_addr().expect("local address").port()
}

/// An in-process `weir-server` with one media core on 127.0.0.1, serving
/// until [`TestServer::stop`].
struct TestServer {
    url: String,
    stop: oneshot::Sender<()>,
    served: JoinHandle<Result<(), weir_signaling::Error>>,
}

impl TestServer {
    async fn start() -> Self {
        let config = Config {
            http: "127.0.0.1:0".parse().unwrap(),
            media: Some(weir::WorkerConfig {
                media_ip: [127, 0, 0, 1].into(),
                media_port: free_udp_port(),
                cores: 1,
                ..Default::default()
            }),
            limits: Limits::default(),
            cluster: None,
        };
        let server = Server::bind(config).await.expect("server binds");
        let addr = server.local_addr();
        let (stop, stop_rx) = oneshot::channel::<()>();
        let served = tokio::spawn(server.run(async move {
            let _ = stop_rx.await;
        }));
        Self {
            url: format!("http://{addr}"),
            stop,
            served,
        }
    }

    /// A scenario against this server: no progress lines, and a join
    /// timeout generous enough for a loaded machine.
    fn scenario(&self) -> Scenario {
        let mut scenario = Scenario::new(&self.url).unwrap();
        scenario.join_timeout = Duration::from_secs(10);
        scenario.progress = false;
        scenario
    }

    /// The sum over cores of the server's counter `weir_core_<name>_total`,
    /// read from `/metrics` with a plain HTTP/1.0 request.
    async fn core_total(&self, name: &str) -> u64 {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let addr = self.url.trim_start_matches("http://");
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").await.unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).await.unwrap();
        let series = format!("weir_core_{name}_total{{");
        text.lines()
            .filter(|l| l.starts_with(&series))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    }

    /// Asks the server to shut down and gives it 15 s to do so.
    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(15), self.served).await;
    }
}

/// Runs `scenario` to its end (at most 40 s) and prints its report.
async fn run_to_end(scenario: Scenario) -> Report {
    let report = tokio::time::timeout(
        Duration::from_secs(40),
        run(scenario, std::future::pending()),
    )
    .await
    .expect("the run ends in time")
    .expect("the run starts");
    println!("{report}");
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_publisher_three_subscribers() {
    let server = TestServer::start().await;

    let mut scenario = server.scenario();
    scenario.publishers = 1;
    scenario.subscribers = 3;
    scenario.duration = Duration::from_secs(5);
    scenario.server_pid = Some(std::process::id());
    let report = run_to_end(scenario).await;

    assert_eq!(report.peers_requested, 4);
    assert_eq!(report.peers_joined, 4, "{report}");
    assert!(report.rx_packets > 0, "{report}");
    assert!(report.rx_packets_per_s > 0.0);
    assert!(report.tx_packets_per_s > 0.0);
    assert!(report.loss_ratio < 0.05, "{report}");
    assert!(report.latency_ms.p50.is_some());
    assert!(report.server_cpu_percent.is_some());
    // Every peer went through every stage, and each DTLS handshake took
    // at least its three flights each way.
    let st = &report.join_stages_ms;
    for (name, q) in [
        ("signaling", st.signaling),
        ("ice", st.ice),
        ("dtls", st.dtls),
        ("media", st.media),
    ] {
        assert!(q.p50.is_some() && q.max.is_some(), "stage {name}: {report}");
    }
    assert_eq!(report.dtls.handshakes, 4, "{report}");
    assert!(report.dtls.datagrams_tx >= 3 * 4, "{report}");
    assert!(report.dtls.datagrams_rx >= 3 * 4, "{report}");
    // RTCP as browsers send it: each subscriber's receiver reports, and
    // the publisher's sender reports (audio and video, every second).
    assert!(report.receiver_reports_sent >= 3, "{report}");
    assert!(report.sender_reports_sent >= 2, "{report}");
    assert_eq!(report.twcc_feedback_sent, 0, "only with --twcc");
    assert_eq!(report.rx_invalid, 0, "{report}");

    let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
    for field in [
        "peers_requested",
        "peers_joined",
        "peers_failed",
        "join_ms",
        "rx_packets_per_s",
        "tx_packets_per_s",
        "loss_ratio",
        "latency_ms",
        "jitter_ms",
        "server_cpu_percent",
        "server_rss_mb",
        "rx_bitrate_kbps",
        "tx_bitrate_kbps",
    ] {
        assert!(json.get(field).is_some(), "JSON lacks {field}");
    }
    for cause in ["signaling", "ice_timeout", "dtls", "media_timeout"] {
        assert_eq!(json["peers_failed"][cause], 0, "{cause}");
    }
    for q in ["p50", "p99", "max"] {
        assert!(json["join_ms"][q].is_number(), "join_ms.{q}");
        assert!(json["latency_ms"][q].is_number(), "latency_ms.{q}");
        assert!(json["jitter_ms"][q].is_number(), "jitter_ms.{q}");
    }

    server.stop().await;
}

/// With `--twcc` subscribers negotiate transport-cc and send its feedback;
/// the server's estimator takes it and probes them with padding, which
/// they count apart from media.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_send_transport_cc_feedback_with_twcc() {
    let server = TestServer::start().await;
    let mut scenario = server.scenario();
    scenario.publishers = 1;
    scenario.subscribers = 2;
    scenario.duration = Duration::from_secs(3);
    scenario.twcc = true;
    let report = run_to_end(scenario).await;
    assert_eq!(report.peers_joined, 3, "{report}");
    // Every 50 ms while media flows.
    assert!(report.twcc_feedback_sent >= 2 * 20, "{report}");
    let received = server.core_total("twcc_feedback_received").await;
    assert!(received > 0, "the server took no transport-cc feedback");
    assert!(received <= report.twcc_feedback_sent);
    assert!(
        server.core_total("probe_packets_sent").await >= report.rx_padding_packets,
        "{report}"
    );
    assert_eq!(report.rx_invalid, 0, "probes are not media: {report}");
    server.stop().await;
}

/// Simulcast publishers, and subscribers that prefer the lowest, then the
/// highest layer: the server binds the three encodings by their rid
/// extension and forwards mostly the preferred one (it starts low and
/// climbs with its bandwidth estimate, so `f` comes after `q` and `h`).
/// The second run replays captured VP8 frames, whose trailer only ends a
/// frame: loss accounting must still come out whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulcast_subscribers_get_the_preferred_layer() {
    let server = TestServer::start().await;

    for layer in [0u8, 2] {
        let mut scenario = server.scenario();
        scenario.publishers = 1;
        scenario.subscribers = 2;
        scenario.simulcast = true;
        scenario.prefer_layer = Some(layer);
        scenario.audio = weir_loadgen::AudioCodec::None;
        scenario.keyframe_interval = Duration::from_secs(1);
        scenario.duration = Duration::from_secs(4);
        scenario.room_prefix = format!("{}-{layer}", scenario.room_prefix);
        if layer == 2 {
            scenario.vp8_frames = weir_loadgen::Vp8Frames::Captured;
        }
        let report = run_to_end(scenario).await;

        assert_eq!(report.peers_joined, 3, "{report}");
        assert!(report.layers_changed >= 2, "{report:?}");
        let [q, _h, f, _] = report.rx_layer_packets;
        if layer == 0 {
            assert!(q > f, "mostly q: {:?}", report.rx_layer_packets);
        } else {
            assert!(f > q, "mostly f: {:?}", report.rx_layer_packets);
        }
        assert!(report.loss_ratio < 0.05, "{report}");
        assert_eq!(report.rx_invalid, 0, "{report}");
    }

    server.stop().await;
}

/// Loss on the publisher's uplink is repaired by the server's NACKs to the
/// publisher, loss on a subscriber's downlink by the subscriber's own NACKs
/// (answered with RTX): `loss_ratio` is after retransmission, and the
/// before-retransmission figure still shows the loss injected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nacks_repair_uplink_and_downlink_loss() {
    let server = TestServer::start().await;

    for downlink in [false, true] {
        let mut scenario = server.scenario();
        scenario.publishers = 1;
        scenario.subscribers = 2;
        // Video only: Opus is not NACKed, as in browsers.
        scenario.audio = weir_loadgen::AudioCodec::None;
        if downlink {
            scenario.rx_loss = 0.1;
        } else {
            scenario.loss = 0.1;
        }
        scenario.duration = Duration::from_secs(5);
        scenario.room_prefix = format!("{}-{downlink}", scenario.room_prefix);
        let report = run_to_end(scenario).await;

        assert_eq!(report.peers_joined, 3, "{report}");
        assert!(report.loss_ratio_before_retransmission > 0.04, "{report}");
        assert!(
            report.loss_ratio < report.loss_ratio_before_retransmission / 2.0,
            "{report}"
        );
        assert!(report.packets_recovered > 0, "{report}");
        if downlink {
            assert!(report.rx_dropped > 0, "{report}");
            assert!(report.nacks_sent > 0, "{report}");
            assert!(report.rx_rtx_packets > 0, "{report}");
        } else {
            assert!(report.tx_dropped > 0, "{report}");
            assert!(report.nacks_received > 0, "{report}");
            assert!(report.packets_retransmitted > 0, "{report}");
            // Weir accepts the RTX the publisher offers, as for browsers.
            assert_eq!(
                report.packets_retransmitted_rtx, report.packets_retransmitted,
                "{report}"
            );
        }
        assert_eq!(report.rx_invalid, 0, "{report}");
    }

    server.stop().await;
}
