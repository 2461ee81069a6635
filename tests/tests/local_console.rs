//! The appliance's local console (`sgw console`) driven through tmux, as
//! an admin at the VM's console would drive it, against a running
//! unactivated gateway whose cloud target is a moto S3 server on loopback.
//! The console runs as a dry run (`--root DIR`): its network changes land
//! under DIR and the commands it would run in DIR/commands.log.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use sgw_tests::s3::{Moto, BUCKET};
use sgw_tests::{free_port, have_tool, sgw_bin, skip, wait_until, Gateway, GatewayOptions};

/// A tmux server of the test's own, killed when dropped.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn start(command: &str) -> Tmux {
        let t = Tmux { socket: format!("sgw-console-test-{}", rand::random::<u32>()) };
        let ok = t.tmux(&["new-session", "-d", "-s", "c", "-x", "140", "-y", "45", command]).success();
        assert!(ok, "tmux new-session failed");
        t
    }

    fn tmux(&self, args: &[&str]) -> std::process::ExitStatus {
        Command::new("tmux").args(["-L", &self.socket]).args(args).status().expect("tmux")
    }

    fn keys(&self, keys: &[&str]) {
        for k in keys {
            assert!(self.tmux(&["send-keys", "-t", "c", k]).success(), "send-keys {k}");
            std::thread::sleep(Duration::from_millis(150));
        }
    }

    fn type_text(&self, text: &str) {
        assert!(self.tmux(&["send-keys", "-t", "c", "-l", text]).success(), "send-keys -l {text}");
        std::thread::sleep(Duration::from_millis(150));
    }

    fn screen(&self) -> String {
        let out = Command::new("tmux").args(["-L", &self.socket, "capture-pane", "-p", "-t", "c"]).output().expect("capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits for the screen to show `text`; the screen, or a panic with it.
    fn wait_for(&self, text: &str, limit: Duration) -> String {
        let mut last = String::new();
        if wait_until(limit, || {
            last = self.screen();
            last.contains(text)
        }) {
            return last;
        }
        panic!("the console never showed {text:?}; it shows:\n{last}");
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux").args(["-L", &self.socket, "kill-server"]).status();
    }
}

fn write_config(path: &Path, data_dir: &Path, https_port: u16, endpoint: &str) {
    let text = format!(
        "data_dir = {data:?}\nhttps_listen = \"127.0.0.1:{https_port}\"\n\n[cloud]\nprefix = \"console\"\n\n[cloud.store]\n\
         kind = \"s3\"\nbucket = \"{BUCKET}\"\nendpoint = \"{endpoint}\"\npath_style = true\n\
         access_key_id = \"testing\"\nsecret_access_key = \"testing\"\n",
        data = data_dir.display().to_string()
    );
    std::fs::write(path, text).expect("config");
}

#[test]
fn the_local_console_sets_a_static_address_tests_s3_and_shows_the_code() {
    if !have_tool("tmux") && skip("tmux is not installed") {
        return;
    }
    let Some(moto) = Moto::start() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let root = tmp.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let config = tmp.path().join("sgw.toml");
    let https_port = free_port();
    write_config(&config, &data, https_port, &moto.endpoint());
    let mut options = GatewayOptions::unactivated();
    options.args = vec!["--config".into(), config.display().to_string()];
    let mut gw = Gateway::start_in_with(&data, free_port(), free_port(), options);

    let command = format!(
        "{} console --config {} --root {}; sleep 60",
        sgw_bin().display(),
        config.display(),
        root.display()
    );
    let tmux = Tmux::start(&command);

    // The banner: the code, as the gateway wrote it, and the fingerprint.
    let screen = tmux.wait_for("Activation code:", Duration::from_secs(20));
    let code = std::fs::read_to_string(data.join("activation-code")).unwrap();
    assert!(screen.contains(code.trim()), "the banner shows another code than {code}:\n{screen}");
    assert!(screen.contains("TLS SHA-256:"), "{screen}");
    tmux.keys(&["Enter"]);
    tmux.wait_for("Reboot or shut down", Duration::from_secs(10));

    // Network: a bad netmask is refused whole, naming the field.
    tmux.keys(&["1"]);
    tmux.wait_for("Addressing", Duration::from_secs(10));
    tmux.keys(&["Space", "Tab"]);
    tmux.type_text("192.0.2.10/33");
    tmux.keys(&["Enter"]);
    tmux.wait_for("netmask /33 is not a prefix length", Duration::from_secs(10));
    let network_file = root.join("etc/systemd/network/10-sgw.network");
    assert!(!network_file.exists(), "a refused form wrote the network file");
    // Then a good static address, kept.
    tmux.keys(&["BSpace", "BSpace"]);
    tmux.type_text("24");
    tmux.keys(&["Tab"]);
    tmux.type_text("192.0.2.1");
    tmux.keys(&["Tab"]);
    tmux.type_text("192.0.2.53");
    tmux.keys(&["Enter"]);
    tmux.wait_for("Keep these network settings?", Duration::from_secs(10));
    tmux.keys(&["y"]);
    tmux.wait_for("network settings kept", Duration::from_secs(10));
    let written = std::fs::read_to_string(&network_file).unwrap();
    assert!(written.contains("Address=192.0.2.10/24\nGateway=192.0.2.1\nDNS=192.0.2.53\n"), "{written}");
    let commands = std::fs::read_to_string(root.join("commands.log")).unwrap();
    assert!(commands.contains("networkctl reload"), "{commands}");
    // F2 rolls it back to what was there before: nothing, DHCP.
    tmux.keys(&["F2"]);
    tmux.wait_for("rolled back", Duration::from_secs(10));
    assert!(!network_file.exists(), "the roll back left the static address");

    // The connectivity test against moto: DNS, TCP, then auth and bucket.
    tmux.keys(&["Escape", "2"]);
    let screen = tmux.wait_for("Auth and bucket", Duration::from_secs(60));
    for step in ["DNS", "TCP", "Auth and bucket"] {
        let line = screen.lines().find(|l| l.contains(step)).unwrap_or_default();
        assert!(line.contains("OK"), "{step} did not pass:\n{screen}");
    }
    assert!(screen.contains("plain http: no TLS"), "{screen}");

    // The resource check names each resource with a verdict.
    tmux.keys(&["Escape", "3"]);
    let screen = tmux.wait_for("Cache disk", Duration::from_secs(10));
    for what in ["CPU", "Memory", "System disk"] {
        assert!(screen.lines().any(|l| l.contains(what) && (l.contains("OK") || l.contains("WARN") || l.contains("FAIL"))), "{screen}");
    }

    // Shutting down asks first; the dry run records the command.
    tmux.keys(&["Escape", "7", "s"]);
    tmux.wait_for("poweroff now?", Duration::from_secs(10));
    tmux.keys(&["y"]);
    tmux.wait_for("poweroff started", Duration::from_secs(10));
    let commands = std::fs::read_to_string(root.join("commands.log")).unwrap();
    assert!(commands.ends_with("systemctl poweroff\n"), "{commands}");

    // Esc twice: back to the banner.
    tmux.keys(&["Escape", "Escape"]);
    tmux.wait_for("Press Enter for the local console", Duration::from_secs(10));
    drop(tmux);
    assert!(gw.stop(), "the gateway did not stop cleanly:\n{}", gw.log_text());
}
