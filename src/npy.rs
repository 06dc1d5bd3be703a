//! NPY, the file format of `numpy.save` (versions 1.0, 2.0 and 3.0), as a byte codec: a reader
//! of float arrays and a writer of f64, f32 and bool arrays. It does no file I/O.
//!
//! A file is the magic string `\x93NUMPY`, a version, the length of the header, the header
//! (a Python dict literal such as `{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }`,
//! padded with spaces to a multiple of 64 bytes and ended by a newline) and the raw elements.
//! The reader takes float64, float32 and float16 in either byte order and in C or Fortran
//! order; it checks the data length against the header's shape before it allocates anything,
//! so a wrong header can cost no more memory than the file itself. The writer writes version
//! 1.0 (2.0 when the header does not fit), little-endian, C order, as `numpy.save` does.

use std::fmt;

use ndarray::{ArrayD, IxDyn, ShapeBuilder};

/// The first six bytes of every NPY file.
pub const MAGIC: &[u8; 6] = b"\x93NUMPY";

/// Headers (with the magic and length fields) are padded to a multiple of this.
const ALIGN: usize = 64;

/// What went wrong reading an NPY file, each with its fix (no file name: the caller adds it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NpyError {
    /// The file does not start with [`MAGIC`].
    NotNpy,
    /// A format version other than 1.0, 2.0 or 3.0.
    Version { major: u8, minor: u8 },
    /// The header is cut short, not text, or not the dict `numpy.save` writes.
    Header(String),
    /// An element type other than float64, float32 or float16.
    Dtype(String),
    /// The data after the header is not as long as the header's shape and dtype say.
    DataSize {
        shape: Vec<usize>,
        descr: String,
        expected: Option<usize>,
        found: usize,
    },
}

impl fmt::Display for NpyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SAVE: &str = "write it with numpy.save";
        match self {
            NpyError::NotNpy => write!(
                f,
                "not an NPY file (it does not start with the bytes \\x93NUMPY); {SAVE}"
            ),
            NpyError::Version { major, minor } => write!(
                f,
                "NPY format version {major}.{minor} is not supported (1.0, 2.0 and 3.0 are); {SAVE}"
            ),
            NpyError::Header(why) => write!(f, "its NPY header is malformed: {why}; {SAVE}"),
            NpyError::Dtype(descr) => write!(
                f,
                "its dtype is {descr}, but only float64, float32 and float16 are read ('<f8', '<f4', '<f2'); \
                 convert the array with .astype(numpy.float64) before numpy.save"
            ),
            NpyError::DataSize {
                shape,
                descr,
                expected,
                found,
            } => {
                let expected = expected.map_or_else(|| "more than 2^64".into(), |e| e.to_string());
                write!(
                    f,
                    "its header says shape {} of '{descr}', which is {expected} bytes of data, \
                     but {found} bytes follow the header; the file is truncated or damaged, {SAVE}",
                    tuple(shape)
                )
            }
        }
    }
}

impl std::error::Error for NpyError {}

/// A shape as Python writes a tuple: `()`, `(3,)`, `(2, 3)`.
pub fn tuple(shape: &[usize]) -> String {
    match shape {
        [] => "()".into(),
        [n] => format!("({n},)"),
        _ => {
            let dims: Vec<String> = shape.iter().map(ToString::to_string).collect();
            format!("({})", dims.join(", "))
        }
    }
}

/// The element types the reader accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Element {
    F64,
    F32,
    F16,
}

impl Element {
    fn size(self) -> usize {
        match self {
            Element::F64 => 8,
            Element::F32 => 4,
            Element::F16 => 2,
        }
    }
}

/// A parsed header: what the data after it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The dtype string as written (`<f8`).
    pub descr: String,
    pub fortran_order: bool,
    pub shape: Vec<usize>,
    element: Element,
    big_endian: bool,
    /// Where the data starts in the file.
    data_start: usize,
}

/// Reads the header of an NPY file, without touching its data.
pub fn read_header(bytes: &[u8]) -> Result<Header, NpyError> {
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        return Err(NpyError::NotNpy);
    }
    let cut = || NpyError::Header("the file ends inside the header".into());
    let (major, minor) = match bytes.get(6..8) {
        Some(v) => (v[0], v[1]),
        None => return Err(cut()),
    };
    let (len, start): (usize, usize) = match (major, minor) {
        (1, 0) => {
            let b = bytes.get(8..10).ok_or_else(cut)?;
            (usize::from(u16::from_le_bytes([b[0], b[1]])), 10)
        }
        (2 | 3, 0) => {
            let b = bytes.get(8..12).ok_or_else(cut)?;
            let len = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            (usize::try_from(len).map_err(|_| cut())?, 12)
        }
        _ => return Err(NpyError::Version { major, minor }),
    };
    let end = start.checked_add(len).ok_or_else(cut)?;
    let text = bytes.get(start..end).ok_or_else(cut)?;
    let text =
        std::str::from_utf8(text).map_err(|_| NpyError::Header("the header is not text".into()))?;
    let dict = parse_dict(text)?;
    let (element, big_endian) = element(&dict.descr)?;
    Ok(Header {
        descr: dict.descr,
        fortran_order: dict.fortran_order,
        shape: dict.shape,
        element,
        big_endian,
        data_start: end,
    })
}

/// The element type and byte order of a dtype string.
fn element(descr: &str) -> Result<(Element, bool), NpyError> {
    let unsupported = || NpyError::Dtype(format!("'{descr}'"));
    let (order, kind) = descr.split_at_checked(1).ok_or_else(unsupported)?;
    let big_endian = match order {
        "<" => false,
        ">" => true,
        _ => return Err(unsupported()),
    };
    let element = match kind {
        "f8" => Element::F64,
        "f4" => Element::F32,
        "f2" => Element::F16,
        _ => return Err(unsupported()),
    };
    Ok((element, big_endian))
}

/// The data of an NPY file whose header is `header`, as f64 in logical (C) order.
pub fn read_data(bytes: &[u8], header: &Header) -> Result<ArrayD<f64>, NpyError> {
    let data = bytes.get(header.data_start..).unwrap_or_default();
    let size = header.element.size();
    let expected = header
        .shape
        .iter()
        .try_fold(size, |acc, &d| acc.checked_mul(d));
    if expected != Some(data.len()) {
        return Err(NpyError::DataSize {
            shape: header.shape.clone(),
            descr: header.descr.clone(),
            expected,
            found: data.len(),
        });
    }
    let values: Vec<f64> = data
        .chunks_exact(size)
        .map(|chunk| decode_element(chunk, header.element, header.big_endian))
        .collect();
    let dims = IxDyn(&header.shape);
    let array = if header.fortran_order {
        ArrayD::from_shape_vec(dims.f(), values)
    } else {
        ArrayD::from_shape_vec(dims, values)
    };
    // The length was checked against the shape above.
    let array = array.map_err(|e| NpyError::Header(e.to_string()))?;
    Ok(array.as_standard_layout().into_owned())
}

fn decode_element(chunk: &[u8], element: Element, big_endian: bool) -> f64 {
    let mut buf = [0u8; 8];
    let n = chunk.len().min(8);
    buf[..n].copy_from_slice(&chunk[..n]);
    if big_endian {
        buf[..n].reverse();
    }
    match element {
        Element::F64 => f64::from_le_bytes(buf),
        Element::F32 => f64::from(f32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]])),
        Element::F16 => f16_to_f64(u16::from_le_bytes([buf[0], buf[1]])),
    }
}

/// IEEE half precision to f64 (exact: every half is an f64).
fn f16_to_f64(bits: u16) -> f64 {
    let sign = if bits & 0x8000 == 0 { 1.0 } else { -1.0 };
    let exponent = i32::from((bits >> 10) & 0x1f);
    let fraction = f64::from(bits & 0x3ff);
    match exponent {
        0 => sign * fraction * 2f64.powi(-24),
        0x1f if fraction == 0.0 => sign * f64::INFINITY,
        0x1f => f64::NAN,
        _ => sign * (1.0 + fraction / 1024.0) * 2f64.powi(exponent - 15),
    }
}

/// The three entries of a header dict.
struct Dict {
    descr: String,
    fortran_order: bool,
    shape: Vec<usize>,
}

/// A value of the header dict.
enum Literal {
    Str(String),
    Bool(bool),
    Tuple(Vec<usize>),
}

/// Parses `{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }` and nothing else: the
/// three keys exactly once, as `numpy.load` requires.
fn parse_dict(text: &str) -> Result<Dict, NpyError> {
    let mut cursor = Cursor { text, at: 0 };
    let (mut descr, mut fortran_order, mut shape) = (None, None, None);
    cursor.expect('{')?;
    while !cursor.eat('}') {
        let key = match cursor.literal()? {
            Literal::Str(key) => key,
            _ => return Err(cursor.error("a key that is not a string")),
        };
        if !["descr", "fortran_order", "shape"].contains(&key.as_str()) {
            return Err(cursor.error(&format!("an unknown key '{key}'")));
        }
        cursor.expect(':')?;
        let value = cursor.literal()?;
        let slot_taken = match (key.as_str(), value) {
            ("descr", Literal::Str(v)) => descr.replace(v).is_some(),
            ("fortran_order", Literal::Bool(v)) => fortran_order.replace(v).is_some(),
            ("shape", Literal::Tuple(v)) => shape.replace(v).is_some(),
            _ => return Err(cursor.error(&format!("a value of the wrong type for '{key}'"))),
        };
        if slot_taken {
            return Err(cursor.error(&format!("the key '{key}' twice")));
        }
        if !cursor.eat(',') {
            cursor.expect('}')?;
            break;
        }
    }
    cursor.skip_space();
    if cursor.at != text.len() {
        return Err(cursor.error("text after the dict"));
    }
    let missing = |key: &str| NpyError::Header(format!("the key '{key}' is missing"));
    Ok(Dict {
        descr: descr.ok_or_else(|| missing("descr"))?,
        fortran_order: fortran_order.ok_or_else(|| missing("fortran_order"))?,
        shape: shape.ok_or_else(|| missing("shape"))?,
    })
}

/// A position in the header text.
struct Cursor<'a> {
    text: &'a str,
    at: usize,
}

impl Cursor<'_> {
    fn rest(&self) -> &str {
        &self.text[self.at..]
    }

    fn skip_space(&mut self) {
        let rest = self.rest();
        self.at += rest.len() - rest.trim_start().len();
    }

    fn error(&self, found: &str) -> NpyError {
        NpyError::Header(format!("found {found} at byte {} of the header", self.at))
    }

    /// Consumes `c` (after spaces) if it comes next.
    fn eat(&mut self, c: char) -> bool {
        self.skip_space();
        if self.rest().starts_with(c) {
            self.at += c.len_utf8();
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: char) -> Result<(), NpyError> {
        if self.eat(c) {
            Ok(())
        } else {
            let next = self.rest().chars().next();
            Err(self.error(&next.map_or_else(
                || format!("the end instead of '{c}'"),
                |n| format!("'{n}' instead of '{c}'"),
            )))
        }
    }

    fn literal(&mut self) -> Result<Literal, NpyError> {
        self.skip_space();
        let rest = self.rest();
        if let Some(quote) = rest.chars().next().filter(|q| *q == '\'' || *q == '"') {
            let body = &rest[1..];
            let end = body
                .find(quote)
                .ok_or_else(|| self.error("a string without its closing quote"))?;
            let value = body[..end].to_string();
            self.at += end + 2;
            return Ok(Literal::Str(value));
        }
        for (word, value) in [("True", true), ("False", false)] {
            if rest.starts_with(word) {
                self.at += word.len();
                return Ok(Literal::Bool(value));
            }
        }
        if rest.starts_with('[') {
            return Err(NpyError::Dtype(
                "a structured dtype (a list of fields)".into(),
            ));
        }
        if self.eat('(') {
            return self.tuple_rest().map(Literal::Tuple);
        }
        Err(self.error("a value that is not a string, a bool or a tuple"))
    }

    /// The dims of a tuple after its `(`: `)`, `3,)`, `2, 3)`.
    fn tuple_rest(&mut self) -> Result<Vec<usize>, NpyError> {
        let mut dims = Vec::new();
        loop {
            if self.eat(')') {
                return Ok(dims);
            }
            let rest = self.rest();
            let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
            let dim = rest[..digits]
                .parse::<usize>()
                .map_err(|_| self.error("a shape entry that is not a size"))?;
            self.at += digits;
            dims.push(dim);
            if !self.eat(',') {
                self.expect(')')?;
                return Ok(dims);
            }
        }
    }
}

/// An element type the writer writes.
pub trait NpyElement: Copy {
    /// The dtype string (`<f8`).
    const DESCR: &'static str;
    fn push_bytes(self, out: &mut Vec<u8>);
}

impl NpyElement for f64 {
    const DESCR: &'static str = "<f8";
    fn push_bytes(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}

impl NpyElement for f32 {
    const DESCR: &'static str = "<f4";
    fn push_bytes(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}

impl NpyElement for bool {
    const DESCR: &'static str = "|b1";
    fn push_bytes(self, out: &mut Vec<u8>) {
        out.push(u8::from(self));
    }
}

/// An NPY file holding `array` (C order, whatever its memory layout), byte for byte what
/// `numpy.save` writes for it: the same dict, the same spare spaces after it (room for the
/// first dimension to grow to 21 digits), padded to 64 bytes.
pub fn write<T: NpyElement>(array: &ArrayD<T>) -> Vec<u8> {
    let dict = format!(
        "{{'descr': '{}', 'fortran_order': False, 'shape': {}, }}",
        T::DESCR,
        tuple(array.shape())
    );
    let growth = array
        .shape()
        .first()
        .map_or(0, |d| 21usize.saturating_sub(d.to_string().len()));
    // Text, spare spaces and the final newline; version 1.0 stores the header length in two
    // bytes, 2.0 in four.
    let text_len = dict.len() + growth + 1;
    let padded = |prefix: usize| text_len + ALIGN - (prefix + text_len) % ALIGN;
    let (version, prefix) = if padded(10) <= usize::from(u16::MAX) {
        (1u8, 10)
    } else {
        (2u8, 12)
    };
    let header_len = padded(prefix);
    let mut out = Vec::with_capacity(prefix + header_len + array.len() * size_of::<T>());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[version, 0]);
    if version == 1 {
        let len = u16::try_from(header_len).unwrap_or(u16::MAX);
        out.extend_from_slice(&len.to_le_bytes());
    } else {
        let len = u32::try_from(header_len).unwrap_or(u32::MAX);
        out.extend_from_slice(&len.to_le_bytes());
    }
    out.extend_from_slice(dict.as_bytes());
    out.resize(prefix + header_len - 1, b' ');
    out.push(b'\n');
    for x in array.iter() {
        x.push_bytes(&mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use ndarray::{ArrayD, IxDyn, array};

    use super::*;

    fn read(bytes: &[u8]) -> Result<ArrayD<f64>, NpyError> {
        read_data(bytes, &read_header(bytes)?)
    }

    /// Files written by NumPy 2.4 (`tests/data/eval/fixtures/make.py`), each holding
    /// `[[1, -2, 0.5], [inf, -inf, 3]]` (shape (2, 3)).
    const FIXTURES: [(&str, &[u8]); 5] = [
        (
            "f8",
            include_bytes!("../tests/data/eval/fixtures/f8.npy").as_slice(),
        ),
        (
            "f4 fortran",
            include_bytes!("../tests/data/eval/fixtures/f4_fortran.npy").as_slice(),
        ),
        (
            "big-endian f8",
            include_bytes!("../tests/data/eval/fixtures/f8_big_endian.npy").as_slice(),
        ),
        (
            "f2",
            include_bytes!("../tests/data/eval/fixtures/f2.npy").as_slice(),
        ),
        (
            "version 2.0",
            include_bytes!("../tests/data/eval/fixtures/f8_v2.npy").as_slice(),
        ),
    ];

    const NUMPY_F8_2X3: &[u8] = include_bytes!("../tests/data/eval/fixtures/f8.npy");
    const NUMPY_SCALAR: &[u8] = include_bytes!("../tests/data/eval/fixtures/scalar.npy");
    const NUMPY_INT: &[u8] = include_bytes!("../tests/data/eval/fixtures/i8.npy");

    fn expected() -> ArrayD<f64> {
        array![[1.0, -2.0, 0.5], [f64::INFINITY, f64::NEG_INFINITY, 3.0]].into_dyn()
    }

    #[test]
    fn reads_what_numpy_writes() {
        for (what, bytes) in FIXTURES {
            assert_eq!(read(bytes).expect(what), expected(), "{what}");
        }
        let scalar = read(NUMPY_SCALAR).expect("scalar");
        assert_eq!(scalar.shape(), &[] as &[usize]);
        assert_eq!(scalar[IxDyn(&[])], 2.5);
    }

    #[test]
    fn writes_what_numpy_writes() {
        assert_eq!(write(&expected()), NUMPY_F8_2X3);
        let scalar = ArrayD::from_elem(IxDyn(&[]), 2.5);
        assert_eq!(write(&scalar), NUMPY_SCALAR);
    }

    #[test]
    fn round_trips_every_value_bit_for_bit() {
        let values = [
            0.0,
            -0.0,
            1.5,
            -1e300,
            5e-324,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ];
        for shape in [&[][..], &[7], &[1, 7], &[7, 1, 1]] {
            let n: usize = shape.iter().product();
            let a = ArrayD::from_shape_vec(IxDyn(shape), values[..n].to_vec()).expect("shape");
            let back = read(&write(&a)).expect("round trip");
            assert_eq!(back.shape(), shape);
            let bits = |x: &ArrayD<f64>| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&back), bits(&a));
        }
        let nan = ArrayD::from_elem(IxDyn(&[2]), f64::NAN);
        assert!(read(&write(&nan)).expect("nan").iter().all(|x| x.is_nan()));
        let single = array![[1.5f32, -0.25], [3.0, f32::INFINITY]].into_dyn();
        let back = read(&write(&single)).expect("f32");
        assert_eq!(back, single.mapv(f64::from));
        assert_eq!(read_header(&write(&single)).expect("f32").descr, "<f4");
    }

    #[test]
    fn a_transposed_view_is_written_in_logical_order() {
        let a = array![[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]].into_dyn();
        let t = a.t().to_owned();
        assert_eq!(read(&write(&t)).expect("t"), t);
    }

    #[test]
    fn bools_are_one_byte_each() {
        let mask = array![[true, false], [false, true]].into_dyn();
        let bytes = write(&mask);
        let header = read_header(&bytes);
        // The reader takes floats only; the writer's bool header is still a valid dict.
        assert_eq!(header, Err(NpyError::Dtype("'|b1'".into())));
        assert_eq!(&bytes[bytes.len() - 4..], &[1, 0, 0, 1]);
        assert_eq!(bytes.len() % 64, 4);
        assert!(
            String::from_utf8_lossy(&bytes)
                .contains("{'descr': '|b1', 'fortran_order': False, 'shape': (2, 2), }")
        );
    }

    #[test]
    fn long_headers_use_version_2() {
        let a = ArrayD::<f64>::zeros(IxDyn(&[1; 30_000]));
        let bytes = write(&a);
        assert_eq!(&bytes[6..8], &[2, 0]);
        assert_eq!(read(&bytes).expect("v2").shape(), &[1; 30_000][..]);
    }

    #[test]
    fn half_precision_values() {
        for (bits, want) in [
            (0x3c00, 1.0),
            (0xc000, -2.0),
            (0x7bff, 65504.0),
            (0x0001, 2f64.powi(-24)),
            (0x8000, -0.0),
            (0x7c00, f64::INFINITY),
            (0xfc00, f64::NEG_INFINITY),
        ] {
            assert_eq!(f16_to_f64(bits).to_bits(), f64::to_bits(want), "{bits:#x}");
        }
        assert!(f16_to_f64(0x7e00).is_nan());
    }

    #[test]
    fn bad_files_are_errors_that_say_what_is_wrong() {
        let good = write(&expected());
        let with = |edit: &dyn Fn(&mut Vec<u8>)| {
            let mut b = good.clone();
            edit(&mut b);
            read(&b)
        };
        assert_eq!(read(b"PK\x03\x04 a zip file"), Err(NpyError::NotNpy));
        assert_eq!(read(b""), Err(NpyError::NotNpy));
        assert_eq!(
            with(&|b| b[6] = 4),
            Err(NpyError::Version { major: 4, minor: 0 })
        );
        let truncated = with(&|b| b.truncate(b.len() - 3));
        assert!(
            matches!(
                &truncated,
                Err(NpyError::DataSize {
                    expected: Some(48),
                    found: 45,
                    ..
                })
            ),
            "{truncated:?}"
        );
        let message = truncated.expect_err("truncated").to_string();
        assert!(message.contains("shape (2, 3) of '<f8'") && message.contains("45 bytes"));
        assert!(matches!(
            with(&|b| b.push(0)),
            Err(NpyError::DataSize { .. })
        ));
        assert_eq!(read(NUMPY_INT), Err(NpyError::Dtype("'<i8'".into())));
        let header = |dict: &str| {
            let mut b = MAGIC.to_vec();
            b.extend_from_slice(&[1, 0]);
            b.extend_from_slice(&u16::try_from(dict.len()).expect("short").to_le_bytes());
            b.extend_from_slice(dict.as_bytes());
            read(&b)
        };
        for (dict, wanted) in [
            (
                "{'descr': '<f8', 'shape': (0,), }",
                "the key 'fortran_order' is missing",
            ),
            (
                "{'descr': '<f8', 'fortran_order': False, 'shape': (0,), 'x': 1}",
                "an unknown key 'x'",
            ),
            (
                "{'descr': '<f8', 'fortran_order': 0, 'shape': (0,)}",
                "not a string, a bool",
            ),
            (
                "{'descr': '<f8', 'fortran_order': False, 'shape': (-1,)}",
                "not a size",
            ),
            (
                "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3}",
                "instead of ')'",
            ),
            ("{'descr': '<f8, 'fortran_order': False}", "instead of '}'"),
            (
                "{'descr': True, 'fortran_order': False, 'shape': ()}",
                "wrong type for 'descr'",
            ),
            (
                "{'descr': '<f8', 'descr': '<f8', 'fortran_order': False}",
                "the key 'descr' twice",
            ),
            (
                "{'descr': '<f8', 'fortran_order': False, 'shape': ()} x",
                "text after the dict",
            ),
            ("['descr']", "instead of '{'"),
        ] {
            let got = header(dict).expect_err(dict).to_string();
            assert!(got.contains(wanted), "{dict}: {got}");
            assert!(got.ends_with("write it with numpy.save"), "{got}");
        }
        let structured = header("{'descr': [('a', '<f8')], 'fortran_order': False, 'shape': ()}");
        assert!(matches!(structured, Err(NpyError::Dtype(_))));
    }

    #[test]
    fn a_huge_shape_in_a_small_file_allocates_nothing() {
        let dict = "{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 4294967296), }";
        let mut b = MAGIC.to_vec();
        b.extend_from_slice(&[1, 0]);
        b.extend_from_slice(&u16::try_from(dict.len()).expect("short").to_le_bytes());
        b.extend_from_slice(dict.as_bytes());
        b.extend_from_slice(&[0; 16]);
        let err = read(&b).expect_err("too big");
        assert!(matches!(
            err,
            NpyError::DataSize {
                expected: None,
                found: 16,
                ..
            }
        ));
        assert!(err.to_string().contains("more than 2^64 bytes"));
    }

    #[test]
    fn every_prefix_of_a_file_is_an_error_not_a_panic() {
        let good = write(&expected());
        for n in 0..good.len() {
            assert!(read(&good[..n]).is_err(), "prefix of {n} bytes");
        }
        let mut v2 = FIXTURES[4].1.to_vec();
        v2.truncate(20);
        assert!(read(&v2).is_err());
        // A header length beyond the file.
        let mut long = good.clone();
        long[8] = 0xff;
        long[9] = 0xff;
        assert!(matches!(read(&long), Err(NpyError::Header(_))));
    }
}
