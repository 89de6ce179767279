//! The requests of one poll: reads of the same unit and kind whose
//! addresses touch or overlap are coalesced into one request, up to the
//! protocol's limit (125 registers, 2000 bits), so a poll costs as few
//! round trips as the register map allows.
//!
//! Only adjacent or overlapping reads merge: reading across a hole could
//! hit addresses the device does not have, and one illegal address fails
//! the whole request.

use super::config::{Kind, ReadConfig};

/// One Modbus request and the reads it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub unit: u8,
    pub kind: Kind,
    pub address: u16,
    /// Registers or bits requested.
    pub count: u16,
    /// Indexes into the configured reads, with each read's offset from `address`.
    pub reads: Vec<(usize, u16)>,
}

/// Groups `reads` into requests, ordered by unit, kind and address.
pub fn plan(reads: &[ReadConfig]) -> Vec<Request> {
    let mut order: Vec<usize> = (0..reads.len()).collect();
    order.sort_by_key(|&i| (reads[i].unit, reads[i].kind, reads[i].address));
    let mut out: Vec<Request> = Vec::new();
    for i in order {
        let r = &reads[i];
        let start = u32::from(r.address);
        let end = start + u32::from(r.data_type().width());
        if let Some(last) = out.last_mut() {
            let last_start = u32::from(last.address);
            let last_end = last_start + u32::from(last.count);
            let merged = end.max(last_end) - last_start;
            if last.unit == r.unit
                && last.kind == r.kind
                && start <= last_end
                && merged <= u32::from(r.kind.max_per_request())
            {
                last.count = merged as u16;
                last.reads.push((i, (start - last_start) as u16));
                continue;
            }
        }
        out.push(Request {
            unit: r.unit,
            kind: r.kind,
            address: r.address,
            count: (end - start) as u16,
            reads: vec![(i, 0)],
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::modbus::config::DataType;

    fn read(unit: u8, kind: Kind, address: u16, t: DataType) -> ReadConfig {
        ReadConfig {
            name: format!("r{unit}_{address}"),
            unit,
            kind,
            address,
            data_type: Some(t),
            word_order: Default::default(),
            scale: None,
            offset: None,
        }
    }

    #[test]
    fn adjacent_reads_of_one_unit_and_kind_share_a_request() {
        let reads = [
            read(1, Kind::Holding, 102, DataType::U16),
            read(1, Kind::Holding, 100, DataType::F32),
            read(1, Kind::Holding, 103, DataType::U64),
            read(1, Kind::Input, 107, DataType::U16),
            read(2, Kind::Holding, 104, DataType::U16),
        ];
        let p = plan(&reads);
        assert_eq!(p.len(), 3, "{p:#?}");
        assert_eq!(
            (p[0].unit, p[0].kind, p[0].address, p[0].count),
            (1, Kind::Holding, 100, 7)
        );
        assert_eq!(p[0].reads, [(1, 0), (0, 2), (2, 3)]);
        assert_eq!((p[1].kind, p[1].address, p[1].count), (Kind::Input, 107, 1));
        assert_eq!((p[2].unit, p[2].address), (2, 104));
    }

    #[test]
    fn overlapping_reads_merge_and_holes_split() {
        let reads = [
            read(1, Kind::Holding, 0, DataType::U32),
            read(1, Kind::Holding, 1, DataType::U16),
            read(1, Kind::Holding, 5, DataType::U16),
        ];
        let p = plan(&reads);
        assert_eq!(p.len(), 2);
        assert_eq!(
            (p[0].address, p[0].count, p[0].reads.clone()),
            (0, 2, vec![(0, 0), (1, 1)])
        );
        assert_eq!((p[1].address, p[1].count), (5, 1));
    }

    #[test]
    fn requests_respect_the_protocol_limits() {
        let regs: Vec<ReadConfig> = (0..130)
            .map(|a| read(1, Kind::Input, a, DataType::U16))
            .collect();
        let p = plan(&regs);
        assert_eq!(p.iter().map(|r| r.count).collect::<Vec<_>>(), [125, 5]);
        let coils: Vec<ReadConfig> = (0..2001)
            .map(|a| read(1, Kind::Coil, a, DataType::Bool))
            .collect();
        let p = plan(&coils);
        assert_eq!(p.iter().map(|r| r.count).collect::<Vec<_>>(), [2000, 1]);
        // A value never straddles two requests.
        let wide: Vec<ReadConfig> = (0..40)
            .map(|i| read(1, Kind::Holding, i * 4, DataType::F64))
            .collect();
        let p = plan(&wide);
        assert_eq!(p.iter().map(|r| r.count).collect::<Vec<_>>(), [124, 36]);
    }
}
