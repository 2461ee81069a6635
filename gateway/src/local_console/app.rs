//! The local console's screens and what each key does: pure state,
//! apart from the terminal (see `ui.rs` for drawing and `mod.rs` for the
//! loop), so that tests can drive it.

use std::time::{Duration, Instant};

use super::checks::{connectivity, Finding, Resources, Verdict};
use super::host::Host;
use super::network::{roll_back, NetworkForm};
use crate::admin::routes::ChangePassword;
use crate::config::ConfigSources;

/// A key, as the screens see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    Char(char),
    Enter,
    Esc,
    Tab,
    BackTab,
    Up,
    Down,
    Backspace,
    F(u8),
}

pub const MENU: [&str; 7] = [
    "Network: address, DNS, host name, proxy",
    "Connectivity test to the S3 endpoint",
    "System resource check",
    "Activation code, console URL, admin password",
    "Time and NTP",
    "Events and logs",
    "Reboot or shut down",
];

/// How long a network change waits for the admin to keep it.
pub const CONFIRM_SECS: u64 = 60;

pub enum Screen {
    Menu,
    Network { form: NetworkForm, focus: usize },
    /// A network change applied: kept with `y`, rolled back with `n` or
    /// when the time runs out (it may have cut the admin off).
    ConfirmNetwork { deadline: Instant },
    Findings { title: &'static str, findings: Vec<Finding> },
    Activation { password: String, confirm: String, focus: usize },
    Text { title: &'static str, text: String, scroll: u16 },
    Power { pending: Option<&'static str> },
}

/// What the loop does after a key.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    Stay,
    /// Back to the banner (or out, when not on a console).
    Leave,
}

pub struct App {
    pub screen: Screen,
    pub menu: usize,
    pub host: Host,
    pub sources: ConfigSources,
    /// The gateway's local socket, `unix:DATA_DIR/sgw.sock`.
    pub api: String,
    /// The console's HTTPS port, for the URL shown.
    pub https_port: u16,
    /// The last outcome, shown at the bottom.
    pub status: Option<(Verdict, String)>,
}

pub const NETWORK_FIELDS: [&str; 6] = ["Addressing", "Address/prefix", "Gateway", "DNS servers", "Host name", "HTTP proxy for S3"];

impl App {
    pub fn on_key(&mut self, key: Key) -> Next {
        if key == Key::Esc && !matches!(self.screen, Screen::ConfirmNetwork { .. }) {
            if matches!(self.screen, Screen::Menu) {
                return Next::Leave;
            }
            self.screen = Screen::Menu;
            return Next::Stay;
        }
        match &mut self.screen {
            Screen::Menu => self.on_menu_key(key),
            Screen::Network { .. } => self.on_network_key(key),
            Screen::ConfirmNetwork { .. } => match key {
                Key::Char('y' | 'Y') => {
                    self.status = Some((Verdict::Ok, "network settings kept".into()));
                    self.screen = Screen::Network { form: NetworkForm::current(&self.host), focus: 0 };
                }
                Key::Char('n' | 'N') => self.roll_back_network("rolled back at your request"),
                _ => {}
            },
            Screen::Activation { .. } => self.on_activation_key(key),
            Screen::Text { scroll, .. } => match key {
                Key::Up => *scroll = scroll.saturating_sub(1),
                Key::Down => *scroll = scroll.saturating_add(1),
                _ => {}
            },
            Screen::Power { pending } => match (key, *pending) {
                (Key::Char('r'), _) => *pending = Some("reboot"),
                (Key::Char('s'), _) => *pending = Some("poweroff"),
                (Key::Char('y'), Some(verb)) => match self.host.run(&["systemctl", verb]) {
                    Ok(_) => self.status = Some((Verdict::Ok, format!("{verb} started"))),
                    Err(e) => self.status = Some((Verdict::Fail, e)),
                },
                (Key::Char('n'), Some(_)) => *pending = None,
                _ => {}
            },
            Screen::Findings { .. } => {}
        }
        Next::Stay
    }

    /// Rolls a network change back when the admin did not keep it in time.
    pub fn tick(&mut self) {
        if let Screen::ConfirmNetwork { deadline } = self.screen {
            if Instant::now() >= deadline {
                self.roll_back_network("not confirmed within 60 s: rolled back");
            }
        }
    }

    fn on_menu_key(&mut self, key: Key) {
        let choice = match key {
            Key::Up => {
                self.menu = self.menu.checked_sub(1).unwrap_or(MENU.len() - 1);
                None
            }
            Key::Down | Key::Tab => {
                self.menu = (self.menu + 1) % MENU.len();
                None
            }
            Key::Enter => Some(self.menu),
            Key::Char(c) => c.to_digit(10).and_then(|d| (d as usize).checked_sub(1)).filter(|i| *i < MENU.len()),
            _ => None,
        };
        if let Some(i) = choice {
            self.menu = i;
            self.status = None;
            self.open(i);
        }
    }

    fn open(&mut self, item: usize) {
        self.screen = match item {
            0 => Screen::Network { form: NetworkForm::current(&self.host), focus: 0 },
            1 => Screen::Findings { title: "Connectivity test", findings: self.config().map(|c| connectivity(&c)).unwrap_or_else(|e| vec![e]) },
            2 => Screen::Findings {
                title: "System resource check",
                findings: self.config().map(|c| Resources::measure(&c).assess()).unwrap_or_else(|e| vec![e]),
            },
            3 => Screen::Activation { password: String::new(), confirm: String::new(), focus: 0 },
            4 => Screen::Text { title: "Time and NTP", text: self.time_text(), scroll: 0 },
            5 => Screen::Text { title: "Events and logs", text: self.logs_text(), scroll: 0 },
            _ => Screen::Power { pending: None },
        };
    }

    fn config(&self) -> Result<crate::config::Config, Finding> {
        self.sources
            .load()
            .map_err(|e| Finding { what: "Configuration".into(), verdict: Verdict::Fail, detail: e.to_string() })
    }

    fn on_network_key(&mut self, key: Key) {
        let Screen::Network { form, focus } = &mut self.screen else { return };
        match key {
            Key::Tab | Key::Down => *focus = (*focus + 1) % NETWORK_FIELDS.len(),
            Key::BackTab | Key::Up => *focus = focus.checked_sub(1).unwrap_or(NETWORK_FIELDS.len() - 1),
            Key::Char(' ') if *focus == 0 => form.dhcp = !form.dhcp,
            Key::Char(c) if *focus > 0 && !c.is_control() => text_field(form, *focus).push(c),
            Key::Backspace if *focus > 0 => {
                text_field(form, *focus).pop();
            }
            Key::F(2) => self.roll_back_network("rolled back to the settings before the last change"),
            Key::Enter => match form.check() {
                Err(e) => {
                    *focus = NETWORK_FIELDS.iter().position(|f| field_key(f) == e.field).unwrap_or(*focus);
                    self.status = Some((Verdict::Fail, format!("{}: {} (nothing was changed)", e.field, e.reason)));
                }
                Ok(settings) => match settings.apply(&self.host) {
                    Ok(()) => {
                        self.status = Some((Verdict::Warn, "applied: press y to keep it, n to roll back".into()));
                        self.screen = Screen::ConfirmNetwork { deadline: Instant::now() + Duration::from_secs(CONFIRM_SECS) };
                    }
                    Err(e) => {
                        let rolled = roll_back(&self.host).map_or_else(|r| format!("; roll back failed too: {r}"), |()| "; rolled back".into());
                        self.status = Some((Verdict::Fail, format!("{e}{rolled}")));
                    }
                },
            },
            _ => {}
        }
    }

    fn roll_back_network(&mut self, why: &str) {
        self.status = Some(match roll_back(&self.host) {
            Ok(()) => (Verdict::Warn, why.to_string()),
            Err(e) => (Verdict::Fail, format!("roll back: {e}")),
        });
        self.screen = Screen::Network { form: NetworkForm::current(&self.host), focus: 0 };
    }

    fn on_activation_key(&mut self, key: Key) {
        let Screen::Activation { password, confirm, focus } = &mut self.screen else { return };
        match key {
            Key::Tab | Key::Down | Key::BackTab | Key::Up => *focus = 1 - *focus,
            Key::Char(c) if !c.is_control() => if *focus == 0 { password } else { confirm }.push(c),
            Key::Backspace => {
                if *focus == 0 { password } else { confirm }.pop();
            }
            Key::Enter if password.is_empty() => {}
            Key::Enter if password != confirm => {
                self.status = Some((Verdict::Fail, "the two passwords differ".into()));
            }
            Key::Enter => {
                let req = ChangePassword { current_password: None, new_password: password.clone() };
                let result = crate::client::Client::new(&self.api, None).and_then(|c| c.set_password(&req));
                self.status = Some(match result {
                    Ok(()) => (Verdict::Ok, "admin password reset; every console session ended".into()),
                    Err(e) => (Verdict::Fail, format!("password not changed: {e}")),
                });
                password.clear();
                confirm.clear();
            }
            _ => {}
        }
    }

    fn time_text(&self) -> String {
        let now = jiff::Timestamp::now();
        let mut t = format!("System time (UTC): {}\n\n", now.strftime("%Y-%m-%d %H:%M:%S"));
        t.push_str(&self.host.query(&["timedatectl", "status"]));
        t.push_str("\nchrony:\n");
        t.push_str(&self.host.query(&["chronyc", "-n", "tracking"]));
        t
    }

    fn logs_text(&self) -> String {
        let events = self.host.query(&["journalctl", "-u", "sgw.service", "-p", "warning", "-n", "100", "--no-pager", "-o", "short-iso"]);
        let log = self.host.query(&["journalctl", "-u", "sgw.service", "-n", "100", "--no-pager", "-o", "short-iso"]);
        format!("Warnings and errors of the gateway (newest last):\n{events}\nThe gateway's log:\n{log}")
    }
}

/// The form field a refusal names, by its label.
fn field_key(label: &str) -> &'static str {
    match label {
        "Address/prefix" => "address",
        "Gateway" => "gateway",
        "DNS servers" => "dns",
        "Host name" => "hostname",
        "HTTP proxy for S3" => "proxy",
        _ => "addressing",
    }
}

fn text_field(form: &mut NetworkForm, focus: usize) -> &mut String {
    match focus {
        1 => &mut form.address,
        2 => &mut form.gateway,
        3 => &mut form.dns,
        4 => &mut form.hostname,
        _ => &mut form.proxy,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(root: &std::path::Path) -> App {
        App {
            screen: Screen::Menu,
            menu: 0,
            host: Host::dry_run(root),
            sources: ConfigSources::default(),
            api: format!("unix:{}", root.join("sgw.sock").display()),
            https_port: 8443,
            status: None,
        }
    }

    fn typed(app: &mut App, text: &str) {
        for c in text.chars() {
            app.on_key(Key::Char(c));
        }
    }

    #[test]
    fn a_bad_entry_is_refused_whole_and_a_change_not_kept_rolls_back() {
        let tmp = tempfile::tempdir().unwrap();
        let mut a = app(tmp.path());
        a.on_key(Key::Char('1'));
        assert!(matches!(a.screen, Screen::Network { .. }));
        a.on_key(Key::Char(' ')); // static
        a.on_key(Key::Tab);
        typed(&mut a, "192.0.2.10/40");
        a.on_key(Key::Enter);
        let (v, msg) = a.status.clone().unwrap();
        assert_eq!(v, Verdict::Fail);
        assert!(msg.contains("netmask /40"), "{msg}");
        assert!(!tmp.path().join(super::super::network::NETWORK_FILE).exists(), "nothing half-applied");

        for _ in 0..2 {
            a.on_key(Key::Backspace);
        }
        typed(&mut a, "24");
        a.on_key(Key::Tab);
        typed(&mut a, "192.0.2.1");
        a.on_key(Key::Enter);
        assert!(matches!(a.screen, Screen::ConfirmNetwork { .. }));
        assert!(a.host.read(super::super::network::NETWORK_FILE).unwrap().contains("Address=192.0.2.10/24"));
        // Not confirmed in time: rolled back, to DHCP (no file).
        a.screen = Screen::ConfirmNetwork { deadline: Instant::now() };
        a.tick();
        assert!(a.host.read(super::super::network::NETWORK_FILE).is_none());
        assert!(matches!(&a.screen, Screen::Network { form, .. } if form.dhcp));
        assert!(a.host.commands().matches("networkctl reload").count() == 2);
    }

    #[test]
    fn power_needs_a_confirmation() {
        let tmp = tempfile::tempdir().unwrap();
        let mut a = app(tmp.path());
        a.on_key(Key::Char('7'));
        a.on_key(Key::Char('r'));
        assert_eq!(a.host.commands(), "");
        a.on_key(Key::Char('n'));
        a.on_key(Key::Char('y'));
        assert_eq!(a.host.commands(), "", "y without a pending action does nothing");
        a.on_key(Key::Char('s'));
        a.on_key(Key::Char('y'));
        assert_eq!(a.host.commands(), "systemctl poweroff\n");
        assert_eq!(a.on_key(Key::Esc), Next::Stay);
        assert_eq!(a.on_key(Key::Esc), Next::Leave);
    }
}
