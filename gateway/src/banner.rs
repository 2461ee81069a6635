//! What the appliance's local console shows first (`sgw console`): where the
//! console is, its certificate's fingerprint, and the activation code while
//! the gateway is unactivated. Run on the gateway's host: it reads the data
//! directory, as `sgw activation-code` does.

use std::fmt::Write;
use std::path::Path;

/// Renders the banner; an error until the daemon has made its
/// certificate.
pub fn render(data_dir: &Path, https_port: u16) -> Result<String, String> {
    let cert = data_dir.join("tls").join("cert.pem");
    if !cert.exists() {
        return Err(format!("no certificate at {} yet: is sgw serve running?", cert.display()));
    }
    let fingerprint = crate::admin::tls::certificate_fingerprint(&cert).map_err(|e| e.to_string())?;
    let code = crate::admin::activation::ActivationCode::read(data_dir).ok().map(|c| c.trim().to_owned()).filter(|c| !c.is_empty());
    let addresses: Vec<std::net::IpAddr> =
        crate::admin::tls::local_addresses().into_iter().filter(|ip| !ip.is_loopback() && !is_link_local(ip)).collect();
    Ok(text(env!("CARGO_PKG_VERSION"), &addresses, https_port, &fingerprint, code.as_deref()))
}

fn is_link_local(ip: &std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V4(v4) => v4.is_link_local(),
        std::net::IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
    }
}

fn text(version: &str, addresses: &[std::net::IpAddr], port: u16, fingerprint: &str, code: Option<&str>) -> String {
    let mut t = String::new();
    let _ = writeln!(t, "\nsgw storage gateway {version}");
    if addresses.is_empty() {
        let _ = writeln!(t, "Console:          no network address yet (DHCP pending?)");
    }
    for ip in addresses {
        let host = match ip {
            std::net::IpAddr::V6(v6) => format!("[{v6}]"),
            std::net::IpAddr::V4(v4) => v4.to_string(),
        };
        let _ = writeln!(t, "Console:          https://{host}:{port}/");
    }
    let _ = writeln!(t, "TLS SHA-256:      {fingerprint}");
    match code {
        Some(code) => {
            let _ = writeln!(t, "Activation code:  {code}");
        }
        None => {
            let _ = writeln!(t, "Activated: sign in at the console.");
        }
    }
    t
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_banner_names_the_console_fingerprint_and_code() {
        let ips = ["10.0.2.15".parse().unwrap(), "fd00::5".parse().unwrap()];
        let t = super::text("1.0", &ips, 8443, "AB:CD", Some("ABCDE-FGHJK"));
        assert!(t.contains("https://10.0.2.15:8443/") && t.contains("https://[fd00::5]:8443/"), "{t}");
        assert!(t.contains("TLS SHA-256:      AB:CD") && t.contains("Activation code:  ABCDE-FGHJK"), "{t}");
        let t = super::text("1.0", &[], 8443, "AB:CD", None);
        assert!(t.contains("no network address") && t.contains("Activated"), "{t}");
    }
}
