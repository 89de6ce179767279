//! Registers and bits into typed values: word order, then type, then
//! `scale` and `offset`.

use weir_core::event::Value;

use super::config::{DataType, ReadConfig, WordOrder};

/// The value of `read` from the registers it spans (`words`, as many as
/// its type's width, in address order).
pub fn registers(read: &ReadConfig, words: &[u16]) -> Value {
    let t = read.data_type();
    let mut w: Vec<u16> = words.iter().take(usize::from(t.width())).copied().collect();
    if read.word_order == WordOrder::Little {
        w.reverse();
    }
    // `w` is now most significant register first.
    let bits = w.iter().fold(0u64, |acc, &x| (acc << 16) | u64::from(x));
    let raw = match t {
        DataType::U16 => Raw::Int(i64::from(bits as u16)),
        DataType::I16 => Raw::Int(i64::from(bits as u16 as i16)),
        DataType::U32 => Raw::Int(i64::from(bits as u32)),
        DataType::I32 => Raw::Int(i64::from(bits as u32 as i32)),
        DataType::U64 => match i64::try_from(bits) {
            Ok(i) => Raw::Int(i),
            Err(_) => Raw::Big(bits),
        },
        DataType::I64 => Raw::Int(bits as i64),
        DataType::F32 => Raw::Float(widen(f32::from_bits(bits as u32))),
        DataType::F64 => Raw::Float(f64::from_bits(bits)),
        DataType::Bool => Raw::Int(i64::from(bits != 0)),
    };
    scaled(read, raw)
}

/// The value of a coil or discrete input.
pub fn bit(b: bool) -> Value {
    Value::Bool(b)
}

enum Raw {
    Int(i64),
    /// A u64 beyond i64: kept exact as text unless scaled.
    Big(u64),
    Float(f64),
}

fn scaled(read: &ReadConfig, raw: Raw) -> Value {
    if read.scale.is_none() && read.offset.is_none() {
        return match raw {
            Raw::Int(i) => Value::Int(i),
            Raw::Big(u) => Value::String(u.to_string()),
            Raw::Float(f) => Value::Float(f),
        };
    }
    let x = match raw {
        Raw::Int(i) => i as f64,
        Raw::Big(u) => u as f64,
        Raw::Float(f) => f,
    };
    Value::Float(x * read.scale.unwrap_or(1.0) + read.offset.unwrap_or(0.0))
}

/// An f32 through its shortest decimal form, so that a register holding
/// 0.1f32 reads 0.1 and not 0.10000000149011612. NaN and infinities stay
/// (JSON shows them as null).
fn widen(x: f32) -> f64 {
    if x.is_finite() {
        x.to_string().parse().unwrap_or(f64::from(x))
    } else {
        f64::from(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::modbus::config::Kind;

    fn read(t: DataType, order: WordOrder) -> ReadConfig {
        ReadConfig {
            name: "v".into(),
            unit: 1,
            kind: Kind::Holding,
            address: 0,
            data_type: Some(t),
            word_order: order,
            scale: None,
            offset: None,
        }
    }

    #[test]
    fn every_type_in_both_word_orders() {
        use DataType::*;
        use WordOrder::*;
        let cases: [(DataType, WordOrder, &[u16], Value); 12] = [
            (U16, Big, &[0xFFFF], Value::Int(65535)),
            (I16, Big, &[0xFFFE], Value::Int(-2)),
            (U32, Big, &[0x0001, 0x0002], Value::Int(0x0001_0002)),
            (U32, Little, &[0x0002, 0x0001], Value::Int(0x0001_0002)),
            (I32, Big, &[0xFFFF, 0xFFFD], Value::Int(-3)),
            (I32, Little, &[0xFFFD, 0xFFFF], Value::Int(-3)),
            (F32, Big, &[0x41AC, 0x0000], Value::Float(21.5)),
            (F32, Little, &[0x0000, 0x41AC], Value::Float(21.5)),
            (U64, Big, &[0, 0, 0, 7], Value::Int(7)),
            (
                U64,
                Big,
                &[0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF],
                Value::String(u64::MAX.to_string()),
            ),
            (
                I64,
                Little,
                &[0xFFFE, 0xFFFF, 0xFFFF, 0xFFFF],
                Value::Int(-2),
            ),
            (
                F64,
                Big,
                &[0x4009, 0x21FB, 0x5444, 0x2D18],
                Value::Float(std::f64::consts::PI),
            ),
        ];
        for (t, order, words, expected) in cases {
            assert_eq!(
                registers(&read(t, order), words),
                expected,
                "{t:?} {order:?}"
            );
        }
    }

    #[test]
    fn f32_values_keep_their_shortest_decimal_form() {
        let b = 0.1f32.to_bits();
        let v = registers(
            &read(DataType::F32, WordOrder::Big),
            &[(b >> 16) as u16, b as u16],
        );
        assert_eq!(v, Value::Float(0.1));
    }

    #[test]
    fn scale_and_offset_make_floats() {
        let mut r = read(DataType::I16, WordOrder::Big);
        r.scale = Some(0.1);
        r.offset = Some(-40.0);
        let Value::Float(v) = registers(&r, &[0xFF9C]) else {
            panic!()
        };
        assert!((v - (-50.0)).abs() < 1e-9, "{v}");
        r.offset = None;
        assert_eq!(registers(&r, &[250]), Value::Float(25.0));
    }
}
