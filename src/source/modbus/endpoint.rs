//! Endpoint URLs:
//! - `tcp://host:port` — Modbus TCP (MBAP framing);
//! - `rtu+tcp://host:port` — RTU frames (with CRC) carried over TCP by a serial server;
//! - `rtu:///dev/ttyUSB0?baud=9600&parity=N&data_bits=8&stop_bits=1` — RTU on a serial line
//!   (defaults: 9600 baud, no parity, 8 data bits, 1 stop bit).

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parity {
    None,
    Even,
    Odd,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointKind {
    Tcp {
        host: String,
        port: u16,
    },
    RtuOverTcp {
        host: String,
        port: u16,
    },
    Rtu {
        path: String,
        baud: u32,
        parity: Parity,
        data_bits: u8,
        stop_bits: u8,
    },
}

impl fmt::Display for EndpointKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EndpointKind::Tcp { host, port } => write!(f, "tcp://{host}:{port}"),
            EndpointKind::RtuOverTcp { host, port } => write!(f, "rtu+tcp://{host}:{port}"),
            EndpointKind::Rtu {
                path,
                baud,
                parity,
                data_bits,
                stop_bits,
            } => write!(
                f,
                "rtu://{path}?baud={baud}&parity={}&data_bits={data_bits}&stop_bits={stop_bits}",
                match parity {
                    Parity::None => "N",
                    Parity::Even => "E",
                    Parity::Odd => "O",
                }
            ),
        }
    }
}

/// The serial port settings of an `rtu://` endpoint (no flow control: RS-485 has none).
pub fn serial_builder(
    path: &str,
    baud: u32,
    parity: Parity,
    data_bits: u8,
    stop_bits: u8,
) -> tokio_serial::SerialPortBuilder {
    tokio_serial::new(path, baud)
        .parity(match parity {
            Parity::None => tokio_serial::Parity::None,
            Parity::Even => tokio_serial::Parity::Even,
            Parity::Odd => tokio_serial::Parity::Odd,
        })
        .data_bits(match data_bits {
            5 => tokio_serial::DataBits::Five,
            6 => tokio_serial::DataBits::Six,
            7 => tokio_serial::DataBits::Seven,
            _ => tokio_serial::DataBits::Eight,
        })
        .stop_bits(if stop_bits == 2 {
            tokio_serial::StopBits::Two
        } else {
            tokio_serial::StopBits::One
        })
        .flow_control(tokio_serial::FlowControl::None)
}

/// Parses an endpoint URL; the error says what would be valid.
pub fn parse(url: &str) -> Result<EndpointKind, String> {
    let example = "write `tcp://host:502`, `rtu+tcp://host:4001` or `rtu:///dev/ttyUSB0?baud=9600&parity=N&data_bits=8&stop_bits=1`";
    let u = url::Url::parse(url).map_err(|e| format!("`{url}` is not a URL ({e}); {example}"))?;
    let host_port = |default_port: u16| -> Result<(String, u16), String> {
        let host = u
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| format!("`{url}` has no host; {example}"))?;
        Ok((
            host.trim_matches(['[', ']']).to_owned(),
            u.port().unwrap_or(default_port),
        ))
    };
    match u.scheme() {
        "tcp" => {
            let (host, port) = host_port(502)?;
            Ok(EndpointKind::Tcp { host, port })
        }
        "rtu+tcp" => {
            let (host, port) = host_port(502)?;
            Ok(EndpointKind::RtuOverTcp { host, port })
        }
        "rtu" => {
            let path = u.path().to_owned();
            if path.is_empty() || path == "/" {
                return Err(format!("`{url}` names no serial device; {example}"));
            }
            let mut baud = 9600;
            let mut parity = Parity::None;
            let mut data_bits = 8;
            let mut stop_bits = 1;
            for (k, v) in u.query_pairs() {
                match k.as_ref() {
                    "baud" => {
                        baud = v
                            .parse()
                            .ok()
                            .filter(|b| *b > 0)
                            .ok_or_else(|| format!("`{url}`: baud `{v}` is not a baud rate, e.g. 9600"))?
                    }
                    "parity" => {
                        parity = match v.as_ref() {
                            "N" | "n" | "none" => Parity::None,
                            "E" | "e" | "even" => Parity::Even,
                            "O" | "o" | "odd" => Parity::Odd,
                            _ => return Err(format!("`{url}`: parity `{v}` is not N, E or O")),
                        }
                    }
                    "data_bits" => {
                        data_bits = v
                            .parse()
                            .ok()
                            .filter(|b| (5..=8).contains(b))
                            .ok_or_else(|| format!("`{url}`: data_bits `{v}` is not 5 to 8"))?
                    }
                    "stop_bits" => {
                        stop_bits = v
                            .parse()
                            .ok()
                            .filter(|b| *b == 1 || *b == 2)
                            .ok_or_else(|| format!("`{url}`: stop_bits `{v}` is not 1 or 2"))?
                    }
                    other => {
                        return Err(format!(
                            "`{url}`: unknown parameter `{other}`; valid: baud, parity, data_bits, stop_bits"
                        ))
                    }
                }
            }
            Ok(EndpointKind::Rtu {
                path,
                baud,
                parity,
                data_bits,
                stop_bits,
            })
        }
        other => Err(format!(
            "`{url}`: scheme `{other}` is not supported; {example}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_urls() {
        assert_eq!(
            parse("tcp://10.0.0.5:1502"),
            Ok(EndpointKind::Tcp {
                host: "10.0.0.5".into(),
                port: 1502
            })
        );
        assert_eq!(
            parse("tcp://plc.local"),
            Ok(EndpointKind::Tcp {
                host: "plc.local".into(),
                port: 502
            })
        );
        assert_eq!(
            parse("rtu+tcp://127.0.0.1:4001"),
            Ok(EndpointKind::RtuOverTcp {
                host: "127.0.0.1".into(),
                port: 4001
            })
        );
        let rtu = parse("rtu:///dev/ttyUSB0?baud=19200&parity=E&data_bits=8&stop_bits=1").unwrap();
        assert_eq!(
            rtu,
            EndpointKind::Rtu {
                path: "/dev/ttyUSB0".into(),
                baud: 19200,
                parity: Parity::Even,
                data_bits: 8,
                stop_bits: 1
            }
        );
        assert_eq!(
            rtu.to_string(),
            "rtu:///dev/ttyUSB0?baud=19200&parity=E&data_bits=8&stop_bits=1"
        );
        assert!(matches!(
            parse("rtu:///dev/ttyS1"),
            Ok(EndpointKind::Rtu { baud: 9600, .. })
        ));
    }

    #[test]
    fn bad_endpoint_urls_say_what_is_valid() {
        for (url, needle) in [
            ("udp://x:502", "scheme `udp` is not supported"),
            ("10.0.0.5:502", "is not a URL"),
            ("rtu:///dev/ttyUSB0?baud=fast", "baud `fast`"),
            ("rtu:///dev/ttyUSB0?parity=X", "parity `X`"),
            ("rtu:///dev/ttyUSB0?stop_bits=3", "stop_bits `3`"),
            ("rtu:///dev/ttyUSB0?speed=9600", "unknown parameter `speed`"),
        ] {
            let e = parse(url).unwrap_err();
            assert!(e.contains(needle), "{url}: {e}");
        }
    }
}
