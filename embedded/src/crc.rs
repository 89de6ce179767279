//! CRC-32C (Castagnoli), the checksum Weir uses everywhere else too (spool
//! records, RecordBatch v2), so one set of test vectors covers the project.
//!
//! Parameters (the "CRC-32/ISCSI" entry of the usual CRC catalogues):
//! polynomial 0x1EDC6F41 (reflected 0x82F63B78), init 0xFFFFFFFF, input and
//! output reflected, xorout 0xFFFFFFFF, check value for `"123456789"`
//! 0xE3069283.
//!
//! A 16-entry table (64 bytes of flash) processed a nibble at a time: two
//! lookups per byte. A microcontroller can afford that where a 1 KiB
//! byte-wise table would hurt, and it is still far faster than a serial line
//! delivers bytes. The C encoder in `embedded/c/` uses the same scheme.

const POLY: u32 = 0x82F6_3B78;

/// `TABLE[i]` is the CRC register after shifting the nibble `i` through it.
const TABLE: [u32; 16] = {
    let mut table = [0u32; 16];
    let mut i = 0;
    while i < 16 {
        let mut crc = i as u32;
        let mut bit = 0;
        while bit < 4 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ POLY
            } else {
                crc >> 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

/// CRC-32C of `data`.
pub fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        crc = (crc >> 4) ^ TABLE[(crc & 0xF) as usize];
        crc = (crc >> 4) ^ TABLE[(crc & 0xF) as usize];
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_catalogue_check_value() {
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn matches_rfc3720_test_vectors() {
        // iSCSI (RFC 3720, B.4) vectors: 32 zero bytes and 32 0xFF bytes.
        assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA);
        assert_eq!(crc32c(&[0xFFu8; 32]), 0x62A8_AB43);
        assert_eq!(crc32c(&[]), 0);
    }
}
