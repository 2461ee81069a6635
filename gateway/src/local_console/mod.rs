//! `sgw console`: the appliance's local console on tty1 and the serial
//! console. It first shows the banner (the console's URL, the TLS
//! fingerprint, the activation code while unactivated) as plain lines,
//! so that a serial log or a screenshot of the VM's screen reads it; Enter
//! opens the menu: network, connectivity test, resource check, activation
//! and password reset, time, logs, reboot and shutdown.
//!
//! There is no login: whoever holds the VM's console (the hypervisor's
//! console or the serial port) has physical access, which is what AWS's
//! local console asks a password for. It runs as root on the appliance;
//! anywhere else, `--root DIR` makes it a dry run that writes under DIR.

mod app;
mod checks;
mod host;
mod network;
mod ui;

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::crossterm::terminal;

use app::{App, Key, Next, Screen};
use host::Host;

pub struct ConsoleOptions {
    pub sources: crate::config::ConfigSources,
    /// A dry run under this directory instead of changing the machine.
    pub root: Option<PathBuf>,
}

pub fn run(o: ConsoleOptions) -> Result<(), String> {
    let config = o.sources.load().map_err(|e| e.to_string())?;
    let (data_dir, https_port) = (config.data_dir, config.https_listen.port());
    let mut app = App {
        screen: Screen::Menu,
        menu: 0,
        host: o.root.as_deref().map_or_else(Host::real, Host::dry_run),
        api: format!("unix:{}", data_dir.join("sgw.sock").display()),
        sources: o.sources,
        https_port,
        status: None,
    };
    terminal::enable_raw_mode().map_err(|e| format!("the console needs a terminal: {e}"))?;
    let result = (|| {
        while banner(&data_dir, https_port)? {
            menu(&mut app)?;
        }
        Ok(())
    })();
    let _ = terminal::disable_raw_mode();
    result
}

/// Shows the banner, refreshed when it changes (the code goes once the
/// gateway is activated), until Enter (true) or Ctrl-C (false).
fn banner(data_dir: &std::path::Path, https_port: u16) -> Result<bool, String> {
    let mut shown = String::new();
    let mut next = Instant::now();
    loop {
        if Instant::now() >= next {
            let text = crate::banner::render(data_dir, https_port)
                .unwrap_or_else(|_| "\nsgw storage gateway: starting...\n".into());
            if text != shown {
                let mut out = std::io::stdout();
                let body = format!("{text}\nPress Enter for the local console's menu.\n");
                write!(out, "{}", body.replace('\n', "\r\n")).map_err(|e| e.to_string())?;
                out.flush().map_err(|e| e.to_string())?;
                shown = text;
            }
            next = Instant::now() + Duration::from_secs(5);
        }
        if event::poll(Duration::from_millis(500)).map_err(|e| e.to_string())? {
            if let Event::Key(k) = event::read().map_err(|e| e.to_string())? {
                if k.kind == KeyEventKind::Release {
                    continue;
                }
                match k.code {
                    KeyCode::Enter => return Ok(true),
                    KeyCode::Char('c') if k.modifiers.contains(KeyModifiers::CONTROL) => return Ok(false),
                    _ => {}
                }
            }
        }
    }
}

/// The menu's screens, in the alternate screen, until Esc on the menu.
fn menu(app: &mut App) -> Result<(), String> {
    use ratatui::crossterm::terminal::{EnterAlternateScreen, LeaveAlternateScreen};
    ratatui::crossterm::execute!(std::io::stdout(), EnterAlternateScreen).map_err(|e| e.to_string())?;
    let backend = ratatui::backend::CrosstermBackend::new(std::io::stdout());
    // A serial console has no size to report: a VT100's, then.
    let size = terminal::size().ok().filter(|(w, h)| *w > 0 && *h > 0);
    let viewport = match size {
        Some(_) => ratatui::Viewport::Fullscreen,
        None => ratatui::Viewport::Fixed(ratatui::layout::Rect::new(0, 0, 80, 24)),
    };
    let mut term = ratatui::Terminal::with_options(backend, ratatui::TerminalOptions { viewport }).map_err(|e| e.to_string())?;
    term.clear().map_err(|e| e.to_string())?;
    app.screen = Screen::Menu;
    let result = (|| loop {
        app.tick();
        term.draw(|f| ui::draw(f, app)).map_err(|e| e.to_string())?;
        if !event::poll(Duration::from_millis(500)).map_err(|e| e.to_string())? {
            continue;
        }
        let Event::Key(k) = event::read().map_err(|e| e.to_string())? else { continue };
        if k.kind == KeyEventKind::Release {
            continue;
        }
        let key = match k.code {
            KeyCode::Char('c') if k.modifiers.contains(KeyModifiers::CONTROL) => Key::Esc,
            KeyCode::Char(c) => Key::Char(c),
            KeyCode::Enter => Key::Enter,
            KeyCode::Esc => Key::Esc,
            KeyCode::Tab => Key::Tab,
            KeyCode::BackTab => Key::BackTab,
            KeyCode::Up => Key::Up,
            KeyCode::Down => Key::Down,
            KeyCode::Backspace => Key::Backspace,
            KeyCode::F(n) => Key::F(n),
            _ => continue,
        };
        if app.on_key(key) == Next::Leave {
            return Ok(());
        }
    })();
    ratatui::crossterm::execute!(std::io::stdout(), LeaveAlternateScreen).map_err(|e| e.to_string())?;
    result
}
