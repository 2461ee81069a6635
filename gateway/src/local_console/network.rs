//! The appliance's network settings as the local console edits them:
//! DHCP or a static address with its gateway and DNS servers, the host
//! name, and an HTTP proxy for S3. Checked whole before anything is
//! written; written as a systemd-networkd file, the host name and a drop-in
//! of sgw.service; the previous files are kept so that one step rolls
//! them back.

use std::net::IpAddr;

use super::host::Host;

/// The networkd file the console owns. It sorts before the image's
/// `80-dhcp.network`, and networkd uses the first file that matches.
pub const NETWORK_FILE: &str = "etc/systemd/network/10-sgw.network";
/// The proxy, as the environment of the gateway's service.
pub const PROXY_FILE: &str = "etc/systemd/system/sgw.service.d/10-proxy.conf";
pub const HOSTNAME_FILE: &str = "etc/hostname";
/// The interfaces the settings apply to: the VM's Ethernet ports.
const MATCH: &str = "en* eth*";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Addressing {
    Dhcp,
    Static { address: IpAddr, prefix: u8, gateway: Option<IpAddr>, dns: Vec<IpAddr> },
}

/// Settings that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkSettings {
    pub addressing: Addressing,
    pub hostname: String,
    /// `http://host:port`, or none.
    pub proxy: Option<String>,
}

/// The form's fields as typed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkForm {
    pub dhcp: bool,
    /// `192.0.2.10/24`
    pub address: String,
    pub gateway: String,
    /// Separated by spaces or commas.
    pub dns: String,
    pub hostname: String,
    pub proxy: String,
}

/// A refused field and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormError {
    pub field: &'static str,
    pub reason: String,
}

fn refuse(field: &'static str, reason: impl Into<String>) -> FormError {
    FormError { field, reason: reason.into() }
}

impl NetworkForm {
    /// Checks every field; nothing is applied unless all pass.
    pub fn check(&self) -> Result<NetworkSettings, FormError> {
        let hostname = self.hostname.trim().to_string();
        check_hostname(&hostname)?;
        let proxy = match self.proxy.trim() {
            "" => None,
            p => Some(check_proxy(p)?),
        };
        let addressing = if self.dhcp {
            Addressing::Dhcp
        } else {
            let (address, prefix) = parse_cidr(self.address.trim())?;
            let gateway = match self.gateway.trim() {
                "" => None,
                g => {
                    let g: IpAddr = g.parse().map_err(|_| refuse("gateway", format!("{g:?} is not an IP address")))?;
                    check_gateway(address, prefix, g)?;
                    Some(g)
                }
            };
            let mut dns = Vec::new();
            for d in self.dns.split([' ', ',']).filter(|d| !d.is_empty()) {
                let ip: IpAddr = d.parse().map_err(|_| refuse("dns", format!("{d:?} is not an IP address")))?;
                if ip.is_unspecified() || ip.is_multicast() {
                    return Err(refuse("dns", format!("{d} cannot be a DNS server")));
                }
                dns.push(ip);
            }
            if dns.len() > 3 {
                return Err(refuse("dns", "at most 3 DNS servers"));
            }
            Addressing::Static { address, prefix, gateway, dns }
        };
        Ok(NetworkSettings { addressing, hostname, proxy })
    }

    /// The form for the settings in force: the console's files, else DHCP
    /// and the machine's host name.
    pub fn current(host: &Host) -> NetworkForm {
        let mut form = NetworkForm { dhcp: true, ..Default::default() };
        if let Some(text) = host.read(NETWORK_FILE) {
            let values = |key: &str| -> Vec<String> {
                text.lines().filter_map(|l| l.trim().strip_prefix(key)?.strip_prefix('=')).map(|v| v.trim().to_string()).collect()
            };
            if values("DHCP").first().map(String::as_str) != Some("yes") {
                form.dhcp = false;
                form.address = values("Address").into_iter().next().unwrap_or_default();
                form.gateway = values("Gateway").into_iter().next().unwrap_or_default();
                form.dns = values("DNS").join(" ");
            }
        }
        form.hostname = host.read(HOSTNAME_FILE).map(|h| h.trim().to_string()).filter(|h| !h.is_empty()).unwrap_or_else(|| "sgw-appliance".into());
        if let Some(text) = host.read(PROXY_FILE) {
            form.proxy = text
                .split('"')
                .find_map(|part| part.strip_prefix("HTTPS_PROXY="))
                .unwrap_or_default()
                .to_string();
        }
        form
    }
}

impl NetworkSettings {
    /// The systemd-networkd file.
    pub fn network_file(&self) -> String {
        let mut t = format!("# Written by the sgw local console (sgw console).\n[Match]\nName={MATCH}\n\n[Network]\n");
        match &self.addressing {
            Addressing::Dhcp => t.push_str("DHCP=yes\n"),
            Addressing::Static { address, prefix, gateway, dns } => {
                t.push_str(&format!("Address={address}/{prefix}\n"));
                if let Some(g) = gateway {
                    t.push_str(&format!("Gateway={g}\n"));
                }
                for d in dns {
                    t.push_str(&format!("DNS={d}\n"));
                }
            }
        }
        t
    }

    /// The gateway service's proxy environment; none without a proxy.
    pub fn proxy_file(&self) -> Option<String> {
        self.proxy.as_ref().map(|p| {
            format!(
                "# Written by the sgw local console: S3 through this proxy.\n[Service]\n\
                 Environment=\"HTTPS_PROXY={p}\" \"HTTP_PROXY={p}\" \"NO_PROXY=localhost,127.0.0.1,::1\"\n"
            )
        })
    }

    /// Writes the settings and reloads what reads them, keeping the files
    /// they replace for [`roll_back`].
    pub fn apply(&self, host: &Host) -> Result<(), String> {
        let proxy_before = host.read(PROXY_FILE);
        host.keep_previous(&[NETWORK_FILE, HOSTNAME_FILE, PROXY_FILE])?;
        host.write(NETWORK_FILE, &self.network_file(), Some("systemd-network"))?;
        host.write(HOSTNAME_FILE, &format!("{}\n", self.hostname), None)?;
        let proxy = self.proxy_file();
        match &proxy {
            Some(text) => host.write(PROXY_FILE, text, None)?,
            None => host.remove(PROXY_FILE)?,
        }
        host.run(&["hostnamectl", "set-hostname", &self.hostname])?;
        host.run(&["networkctl", "reload"])?;
        if proxy != proxy_before {
            // The gateway reads its environment at start only.
            host.run(&["systemctl", "daemon-reload"])?;
            host.run(&["systemctl", "try-restart", "sgw.service"])?;
        }
        Ok(())
    }
}

/// Puts back the files the last apply replaced, and reloads.
pub fn roll_back(host: &Host) -> Result<(), String> {
    if !host.restore_previous(&[NETWORK_FILE, HOSTNAME_FILE, PROXY_FILE])? {
        return Err("there is nothing to roll back".into());
    }
    let hostname = host.read(HOSTNAME_FILE).map(|h| h.trim().to_string()).unwrap_or_default();
    if !hostname.is_empty() {
        host.run(&["hostnamectl", "set-hostname", &hostname])?;
    }
    host.run(&["networkctl", "reload"])?;
    host.run(&["systemctl", "daemon-reload"])?;
    host.run(&["systemctl", "try-restart", "sgw.service"])?;
    Ok(())
}

fn parse_cidr(text: &str) -> Result<(IpAddr, u8), FormError> {
    let Some((ip, prefix)) = text.split_once('/') else {
        return Err(refuse("address", format!("{text:?}: give the address with its prefix length, e.g. 192.0.2.10/24")));
    };
    let ip: IpAddr = ip.parse().map_err(|_| refuse("address", format!("{ip:?} is not an IP address")))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let prefix: u8 = prefix
        .parse()
        .ok()
        .filter(|p| (1..=max).contains(p))
        .ok_or_else(|| refuse("address", format!("netmask /{prefix} is not a prefix length of 1-{max}")))?;
    if ip.is_unspecified() || ip.is_loopback() || ip.is_multicast() {
        return Err(refuse("address", format!("{ip} cannot be the gateway's address")));
    }
    if let IpAddr::V4(v4) = ip {
        if prefix <= 30 {
            let host_bits = u32::from(v4) & (u32::MAX >> prefix);
            if host_bits == 0 {
                return Err(refuse("address", format!("{ip}/{prefix} is the network's own address")));
            }
            if host_bits == u32::MAX >> prefix {
                return Err(refuse("address", format!("{ip}/{prefix} is the network's broadcast address")));
            }
        }
    }
    Ok((ip, prefix))
}

/// The gateway must be another host of the address's own network.
fn check_gateway(address: IpAddr, prefix: u8, gateway: IpAddr) -> Result<(), FormError> {
    if gateway == address {
        return Err(refuse("gateway", "the gateway cannot be the appliance's own address"));
    }
    let same_net = match (address, gateway) {
        (IpAddr::V4(a), IpAddr::V4(g)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            u32::from(a) & mask == u32::from(g) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(g)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            u128::from(a) & mask == u128::from(g) & mask || g.segments()[0] & 0xffc0 == 0xfe80
        }
        _ => false,
    };
    if !same_net {
        return Err(refuse("gateway", format!("{gateway} is not in {address}/{prefix}'s network")));
    }
    Ok(())
}

/// RFC 1123: labels of 1-63 letters, digits and inner hyphens; 253 in all.
fn check_hostname(name: &str) -> Result<(), FormError> {
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if name.is_empty() || name.len() > 253 || !name.split('.').all(label_ok) {
        return Err(refuse("hostname", format!("{name:?} is not a host name (letters, digits and inner hyphens, dot-separated labels of 1-63)")));
    }
    Ok(())
}

/// `http://host:port` (or https), with nothing after the port.
fn check_proxy(p: &str) -> Result<String, FormError> {
    let rest = p
        .strip_prefix("http://")
        .or_else(|| p.strip_prefix("https://"))
        .ok_or_else(|| refuse("proxy", format!("{p:?}: a proxy is http://host:port")))?;
    let rest = rest.trim_end_matches('/');
    let (host, port) = rest
        .rsplit_once(':')
        .ok_or_else(|| refuse("proxy", format!("{p:?}: give the proxy's port, e.g. http://proxy.example:3128")))?;
    let port_ok = port.parse::<u16>().is_ok_and(|p| p > 0);
    let host_ok = check_hostname(host).is_ok()
        || host.parse::<IpAddr>().is_ok()
        || host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).is_some_and(|h| h.parse::<IpAddr>().is_ok());
    if !port_ok || !host_ok || rest.contains(['@', '/', '?', '#', ' ']) {
        return Err(refuse("proxy", format!("{p:?}: a proxy is http://host:port")));
    }
    Ok(p.trim_end_matches('/').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(address: &str, gateway: &str, dns: &str) -> NetworkForm {
        NetworkForm {
            dhcp: false,
            address: address.into(),
            gateway: gateway.into(),
            dns: dns.into(),
            hostname: "gw1".into(),
            proxy: String::new(),
        }
    }

    #[test]
    fn bad_entries_name_their_field() {
        let cases = [
            (form("192.0.2.10", "", ""), "address", "prefix length"),
            (form("192.0.2.300/24", "", ""), "address", "not an IP"),
            (form("192.0.2.10/33", "", ""), "address", "netmask /33"),
            (form("192.0.2.0/24", "", ""), "address", "network's own"),
            (form("192.0.2.255/24", "", ""), "address", "broadcast"),
            (form("127.0.0.2/8", "", ""), "address", "cannot be"),
            (form("192.0.2.10/24", "198.51.100.1", ""), "gateway", "not in"),
            (form("192.0.2.10/24", "192.0.2.10", ""), "gateway", "own address"),
            (form("192.0.2.10/24", "192.0.2.1", "dns.example"), "dns", "not an IP"),
            (form("192.0.2.10/24", "192.0.2.1", "1.1.1.1 8.8.8.8 9.9.9.9 8.8.4.4"), "dns", "at most 3"),
        ];
        for (f, field, reason) in cases {
            let e = f.check().unwrap_err();
            assert_eq!(e.field, field, "{f:?}: {e:?}");
            assert!(e.reason.contains(reason), "{f:?}: {e:?}");
        }
        let mut f = form("192.0.2.10/24", "192.0.2.1", "");
        f.hostname = "-bad".into();
        assert_eq!(f.check().unwrap_err().field, "hostname");
        f.hostname = "gw1".into();
        for bad in ["proxy:3128", "http://proxy", "http://user@proxy:3128", "http://proxy:0", "http://proxy:3128/path"] {
            f.proxy = bad.into();
            assert_eq!(f.check().unwrap_err().field, "proxy", "{bad}");
        }
        f.proxy = "http://proxy.lab:3128".into();
        assert!(f.check().is_ok());
    }

    #[test]
    fn settings_become_networkd_and_service_files() {
        let s = form("192.0.2.10/24", "192.0.2.1", "192.0.2.53, 9.9.9.9").check().unwrap();
        let t = s.network_file();
        assert!(t.contains("Address=192.0.2.10/24\nGateway=192.0.2.1\nDNS=192.0.2.53\nDNS=9.9.9.9\n"), "{t}");
        assert_eq!(s.proxy_file(), None);
        let dhcp = NetworkForm { dhcp: true, hostname: "a.b".into(), ..Default::default() }.check().unwrap();
        assert!(dhcp.network_file().contains("DHCP=yes"));
        assert_eq!(dhcp.addressing, Addressing::Dhcp);
    }

    proptest::proptest! {
        /// Whatever is typed: a refusal naming a field, or settings that
        /// read back from the files as they were typed.
        #[test]
        fn any_input_is_refused_cleanly_or_round_trips(dhcp: bool, address in "[0-9./a-f:]{0,24}", gateway in "[0-9.a-f:]{0,16}",
                                                       dns in "[0-9., ]{0,32}", hostname in "[a-z0-9.-]{0,20}", proxy in "(http://[a-z0-9.]{1,8}:[0-9]{1,5})?") {
            let form = NetworkForm { dhcp, address, gateway, dns, hostname, proxy };
            match form.check() {
                Err(e) => proptest::prop_assert!(["address", "gateway", "dns", "hostname", "proxy"].contains(&e.field)),
                Ok(settings) => {
                    let tmp = tempfile::tempdir().unwrap();
                    let host = Host::dry_run(tmp.path());
                    settings.apply(&host).unwrap();
                    let again = NetworkForm::current(&host).check().unwrap();
                    proptest::prop_assert_eq!(again, settings);
                }
            }
        }
    }

    #[test]
    fn apply_then_roll_back_restores_every_file() {
        let tmp = tempfile::tempdir().unwrap();
        let host = Host::dry_run(tmp.path());
        let before = NetworkForm::current(&host);
        assert!(before.dhcp);
        let mut f = form("192.0.2.10/24", "192.0.2.1", "192.0.2.53");
        f.proxy = "http://proxy.lab:3128".into();
        f.check().unwrap().apply(&host).unwrap();
        let now = NetworkForm::current(&host);
        assert_eq!((now.dhcp, now.address.as_str(), now.dns.as_str()), (false, "192.0.2.10/24", "192.0.2.53"));
        assert_eq!(now.proxy, "http://proxy.lab:3128");
        assert_eq!(now.hostname, "gw1");
        let commands = host.commands();
        assert!(commands.contains("networkctl reload") && commands.contains("systemctl try-restart sgw.service"), "{commands}");
        roll_back(&host).unwrap();
        assert_eq!(NetworkForm::current(&host), before);
        assert!(roll_back(&host).is_err(), "a second roll back has nothing to restore");
    }
}
