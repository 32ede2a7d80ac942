//! Rendering of the routed-mode payloads (`ftfwctl neighbors`, `ftfwctl routes`).

use super::super::proto::{NeighborsInfo, RoutesInfo};
use super::table;

/// `ftfwctl neighbors`.
pub fn neighbors(n: &NeighborsInfo) -> String {
    let rows: Vec<Vec<String>> = n
        .neighbors
        .iter()
        .map(|e| {
            vec![
                e.ip.clone(),
                e.mac.clone(),
                e.port.clone(),
                format!("{}s", e.age_secs),
            ]
        })
        .collect();
    let mut o = table(&["IP", "MAC", "PORT", "AGE"], &rows);
    o.push_str(&format!(
        "{} of {} entries; learned {}, expired {}, refused (table full) {}\n",
        n.neighbors.len(),
        n.capacity,
        n.learned,
        n.expired,
        n.table_full
    ));
    o
}

/// `ftfwctl routes`.
pub fn routes(r: &RoutesInfo) -> String {
    let rows: Vec<Vec<String>> = r
        .routes
        .iter()
        .map(|e| {
            vec![
                e.to.clone(),
                e.via.clone().unwrap_or_else(|| "-".into()),
                e.port.clone(),
                e.kind.clone(),
            ]
        })
        .collect();
    table(&["TO", "VIA", "PORT", "KIND"], &rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::console::proto::{NeighborEntry, RouteEntry};

    #[test]
    fn renders_tables() {
        let n = NeighborsInfo {
            neighbors: vec![NeighborEntry {
                ip: "192.0.2.1".into(),
                mac: "52:54:00:00:00:01".into(),
                port: "outside".into(),
                age_secs: 3,
            }],
            capacity: 4096,
            learned: 1,
            expired: 0,
            table_full: 0,
        };
        let t = neighbors(&n);
        assert!(t.trim_start().starts_with("IP"), "{t}");
        assert!(t.contains("192.0.2.1") && t.contains("52:54:00:00:00:01") && t.contains("3s"));
        assert!(t.ends_with("1 of 4096 entries; learned 1, expired 0, refused (table full) 0\n"));
        let r = RoutesInfo {
            routes: vec![
                RouteEntry {
                    to: "192.0.2.0/24".into(),
                    via: None,
                    port: "outside".into(),
                    kind: "connected".into(),
                },
                RouteEntry {
                    to: "0.0.0.0/0".into(),
                    via: Some("192.0.2.1".into()),
                    port: "outside".into(),
                    kind: "static".into(),
                },
            ],
        };
        let t = routes(&r);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3, "{t}");
        assert!(lines[1].contains("192.0.2.0/24") && lines[1].contains(" - "));
        assert!(lines[2].contains("192.0.2.1") && lines[2].contains("static"));
    }
}
