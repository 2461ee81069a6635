//! Draws the local console's screens (ratatui).

use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Wrap};
use ratatui::Frame;

use super::app::{App, Screen, CONFIRM_SECS, MENU, NETWORK_FIELDS};
use super::checks::Verdict;

fn verdict_style(v: Verdict) -> Style {
    match v {
        Verdict::Ok => Style::default().fg(Color::Green),
        Verdict::Warn => Style::default().fg(Color::Yellow),
        Verdict::Fail => Style::default().fg(Color::Red).add_modifier(Modifier::BOLD),
        Verdict::Skipped => Style::default(),
    }
}

pub fn draw(f: &mut Frame, app: &App) {
    let [title, body, status, help] =
        Layout::vertical([Constraint::Length(1), Constraint::Min(5), Constraint::Length(2), Constraint::Length(1)]).areas(f.area());
    let dry = if app.host.is_dry_run() { "  [dry run: nothing is changed]" } else { "" };
    f.render_widget(
        Paragraph::new(format!("sgw storage gateway {}: local console{dry}", env!("CARGO_PKG_VERSION")))
            .style(Style::default().add_modifier(Modifier::REVERSED)),
        title,
    );
    let (heading, lines, keys) = screen_text(app);
    f.render_widget(
        Paragraph::new(lines).block(Block::default().borders(Borders::ALL).title(heading)).wrap(Wrap { trim: false }).scroll((
            match &app.screen {
                Screen::Text { scroll, .. } => *scroll,
                _ => 0,
            },
            0,
        )),
        body,
    );
    if let Some((v, msg)) = &app.status {
        f.render_widget(
            Paragraph::new(Line::from(vec![Span::styled(format!("{}: ", v.label()), verdict_style(*v)), Span::raw(msg.clone())]))
                .wrap(Wrap { trim: true }),
            status,
        );
    }
    f.render_widget(Paragraph::new(keys).style(Style::default().add_modifier(Modifier::DIM)), help);
}

fn screen_text(app: &App) -> (String, Vec<Line<'static>>, String) {
    match &app.screen {
        Screen::Menu => {
            let lines = MENU
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    let text = format!(" {}  {item}", i + 1);
                    if i == app.menu {
                        Line::styled(text, Style::default().add_modifier(Modifier::REVERSED))
                    } else {
                        Line::raw(text)
                    }
                })
                .collect();
            ("Menu".into(), lines, "1-7 or arrows and Enter: open   Esc: back to the banner".into())
        }
        Screen::Network { form, focus } => {
            let values = [
                if form.dhcp { "DHCP".to_string() } else { "static".to_string() },
                form.address.clone(),
                form.gateway.clone(),
                form.dns.clone(),
                form.hostname.clone(),
                form.proxy.clone(),
            ];
            let mut lines: Vec<Line> = NETWORK_FIELDS
                .iter()
                .zip(values)
                .enumerate()
                .filter(|(i, _)| !form.dhcp || !(1..=3).contains(i))
                .map(|(i, (label, value))| {
                    let cursor = if i == *focus { "_" } else { "" };
                    let style = if i == *focus { Style::default().add_modifier(Modifier::REVERSED) } else { Style::default() };
                    Line::from(vec![Span::raw(format!(" {label:<20} ")), Span::styled(format!("{value}{cursor}"), style)])
                })
                .collect();
            let addresses: Vec<String> = crate::admin::tls::local_addresses().into_iter().filter(|ip| !ip.is_loopback()).map(|ip| ip.to_string()).collect();
            lines.push(Line::raw(""));
            lines.push(Line::raw(format!(" Addresses now: {}", if addresses.is_empty() { "none".into() } else { addresses.join(", ") })));
            lines.push(Line::raw(" Changing the proxy restarts the gateway (iSCSI initiators reconnect)."));
            (
                "Network".into(),
                lines,
                "Tab/arrows: field   Space: DHCP/static   Enter: apply   F2: roll back the last change   Esc: menu".into(),
            )
        }
        Screen::ConfirmNetwork { deadline } => {
            let left = deadline.saturating_duration_since(std::time::Instant::now()).as_secs();
            (
                "Keep these network settings?".into(),
                vec![
                    Line::raw(" The new settings are applied."),
                    Line::raw(format!(" If they cut you off, they roll back by themselves in {left} s (of {CONFIRM_SECS}).")),
                    Line::raw(""),
                    Line::raw(" y: keep them     n: roll back now"),
                ],
                "y: keep   n: roll back".into(),
            )
        }
        Screen::Findings { title, findings } => {
            let lines = findings
                .iter()
                .map(|f| {
                    Line::from(vec![
                        Span::styled(format!(" {:<5}", f.verdict.label()), verdict_style(f.verdict)),
                        Span::raw(format!("{:<17}{}", f.what, f.detail)),
                    ])
                })
                .collect();
            (title.to_string(), lines, "Esc: menu".into())
        }
        Screen::Activation { password, confirm, focus } => {
            let data_dir = app.sources.load().map(|c| c.data_dir).unwrap_or_default();
            let banner = crate::banner::render(&data_dir, app.https_port).unwrap_or_else(|e| e);
            let mut lines: Vec<Line> = banner.lines().map(|l| Line::raw(format!(" {l}"))).collect();
            lines.push(Line::raw(""));
            lines.push(Line::raw(" Reset the admin password (at least 12 characters):"));
            for (i, (label, value)) in [("New password", password), ("Again", confirm)].into_iter().enumerate() {
                let style = if i == *focus { Style::default().add_modifier(Modifier::REVERSED) } else { Style::default() };
                let cursor = if i == *focus { "_" } else { "" };
                lines.push(Line::from(vec![
                    Span::raw(format!(" {label:<14} ")),
                    Span::styled(format!("{}{cursor}", "*".repeat(value.chars().count())), style),
                ]));
            }
            ("Activation and admin password".into(), lines, "Tab: field   Enter: reset the password   Esc: menu".into())
        }
        Screen::Text { title, text, .. } => {
            (title.to_string(), text.lines().map(|l| Line::raw(format!(" {l}"))).collect(), "Up/Down: scroll   Esc: menu".into())
        }
        Screen::Power { pending } => {
            let mut lines = vec![
                Line::raw(" r: reboot     s: shut down"),
                Line::raw(" The gateway stops first and commits its recovery points; iSCSI initiators wait for it."),
            ];
            if let Some(verb) = pending {
                lines.push(Line::raw(""));
                lines.push(Line::styled(format!(" {verb} now? y: yes   n: no"), Style::default().add_modifier(Modifier::BOLD)));
            }
            ("Reboot or shut down".into(), lines, "r/s, then y to confirm   Esc: menu".into())
        }
    }
}
