//! Transformations (`t:…`), one file each. They are pure byte-to-byte functions; the
//! transaction caches their results per value so CRS's repeated chains are cheap.

mod base64_decode;
mod cmd_line;
mod compress_whitespace;
mod css_decode;
mod escape_seq_decode;
mod hex;
mod html_entity_decode;
mod js_decode;
mod length;
mod lowercase;
mod md5;
mod normalize_path;
mod normalize_path_win;
mod parity;
#[cfg(test)]
mod reference_tests;
mod remove_comments;
mod remove_comments_char;
mod remove_nulls;
mod remove_whitespace;
mod replace_comments;
mod replace_nulls;
mod sha1;
mod sql_hex_decode;
mod trim;
mod uppercase;
mod url_decode;
mod url_decode_uni;
mod url_encode;
mod utf8_to_unicode;

use crate::byteset::ByteSet;

/// One transformation function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum Transform {
    Lowercase,
    Uppercase,
    UrlDecode,
    UrlDecodeUni,
    UrlEncode,
    HtmlEntityDecode,
    JsDecode,
    CssDecode,
    CmdLine,
    CompressWhitespace,
    RemoveWhitespace,
    RemoveNulls,
    ReplaceNulls,
    ReplaceComments,
    RemoveComments,
    RemoveCommentsChar,
    NormalizePath,
    NormalizePathWin,
    Base64Decode,
    Base64DecodeExt,
    Base64Encode,
    HexDecode,
    HexEncode,
    Utf8ToUnicode,
    Length,
    Sha1,
    Md5,
    ParityEven7bit,
    ParityOdd7bit,
    ParityZero7bit,
    Trim,
    TrimLeft,
    TrimRight,
    EscapeSeqDecode,
    SqlHexDecode,
}

/// Result of looking up a `t:` name.
pub enum Parsed {
    /// `t:none`: clears the list so far.
    None,
    /// A known transformation.
    Known(Transform),
}

impl Transform {
    /// Parses a `t:` argument (case-insensitive, as ModSecurity accepts).
    pub fn parse(name: &str) -> Option<Parsed> {
        use Transform::*;
        Some(Parsed::Known(match name.to_ascii_lowercase().as_str() {
            "none" => return Some(Parsed::None),
            "lowercase" => Lowercase,
            "uppercase" => Uppercase,
            "urldecode" => UrlDecode,
            "urldecodeuni" => UrlDecodeUni,
            "urlencode" => UrlEncode,
            "htmlentitydecode" => HtmlEntityDecode,
            "jsdecode" => JsDecode,
            "cssdecode" => CssDecode,
            "cmdline" => CmdLine,
            "compresswhitespace" => CompressWhitespace,
            "removewhitespace" => RemoveWhitespace,
            "removenulls" => RemoveNulls,
            "replacenulls" => ReplaceNulls,
            "replacecomments" => ReplaceComments,
            "removecomments" => RemoveComments,
            "removecommentschar" => RemoveCommentsChar,
            "normalizepath" | "normalisepath" => NormalizePath,
            "normalizepathwin" | "normalisepathwin" => NormalizePathWin,
            "base64decode" => Base64Decode,
            "base64decodeext" => Base64DecodeExt,
            "base64encode" => Base64Encode,
            "hexdecode" => HexDecode,
            "hexencode" => HexEncode,
            "utf8tounicode" => Utf8ToUnicode,
            "length" => Length,
            "sha1" => Sha1,
            "md5" => Md5,
            "parityeven7bit" => ParityEven7bit,
            "parityodd7bit" => ParityOdd7bit,
            "parityzero7bit" => ParityZero7bit,
            "trim" => Trim,
            "trimleft" => TrimLeft,
            "trimright" => TrimRight,
            "escapeseqdecode" => EscapeSeqDecode,
            "sqlhexdecode" => SqlHexDecode,
            _ => return None,
        }))
    }

    /// Bytes whose presence may make this transformation change a value: a value
    /// containing none of them comes out unchanged. `None` when any value may change.
    pub(crate) fn trigger_bytes(self) -> Option<ByteSet> {
        use Transform::*;
        let spaces = ByteSet::from_bytes(b" \t\n\r\x0b\x0c\xa0");
        Some(match self {
            UrlDecode | UrlDecodeUni => ByteSet::from_bytes(b"%+"),
            HtmlEntityDecode => ByteSet::from_bytes(b"&"),
            JsDecode | CssDecode | EscapeSeqDecode => ByteSet::from_bytes(b"\\"),
            Lowercase => ByteSet::range(b'A', b'Z'),
            Uppercase => ByteSet::range(b'a', b'z'),
            RemoveNulls | ReplaceNulls => ByteSet::from_bytes(b"\0"),
            Utf8ToUnicode => ByteSet::range(0x80, 0xff),
            RemoveWhitespace | CompressWhitespace | Trim | TrimLeft | TrimRight => spaces,
            ReplaceComments => ByteSet::from_bytes(b"/"),
            RemoveComments | RemoveCommentsChar => ByteSet::from_bytes(b"/*-#<"),
            CmdLine => ByteSet::from_bytes(b"\\\"'^,; \t\r\n").union(ByteSet::range(b'A', b'Z')),
            NormalizePath => ByteSet::from_bytes(b"/."),
            NormalizePathWin => ByteSet::from_bytes(b"/.\\"),
            SqlHexDecode => ByteSet::from_bytes(b"0"),
            _ => return None,
        })
    }

    /// [`Transform::trigger_bytes`] of a whole chain.
    pub(crate) fn chain_trigger_bytes(chain: &[Transform]) -> Option<ByteSet> {
        chain.iter().try_fold(ByteSet::EMPTY, |acc, t| {
            t.trigger_bytes().map(|b| acc.union(b))
        })
    }

    /// Applies the transformation, borrowing the input when a cheap scan shows it
    /// would come out unchanged (the common case for benign values).
    pub fn apply_cow(self, input: &[u8]) -> std::borrow::Cow<'_, [u8]> {
        use std::borrow::Cow;
        use Transform::*;
        let has = |c: u8| input.contains(&c);
        let unchanged = match self {
            UrlDecode | UrlDecodeUni => !has(b'%') && !has(b'+'),
            HtmlEntityDecode => !has(b'&'),
            JsDecode | CssDecode | EscapeSeqDecode => !has(b'\\'),
            Lowercase => !input.iter().any(u8::is_ascii_uppercase),
            Uppercase => !input.iter().any(u8::is_ascii_lowercase),
            RemoveNulls | ReplaceNulls => !has(0),
            Utf8ToUnicode => input.is_ascii(),
            RemoveWhitespace => !input.iter().any(|&c| is_space(c)),
            ReplaceComments => !has(b'/'),
            RemoveComments | RemoveCommentsChar => !input
                .iter()
                .any(|&c| matches!(c, b'/' | b'*' | b'-' | b'#' | b'<')),
            Trim | TrimLeft | TrimRight => {
                !input.first().is_some_and(|&c| is_c_space(c))
                    && !input.last().is_some_and(|&c| is_c_space(c))
            }
            NormalizePath => normalize_path::is_normal(input, false),
            NormalizePathWin => normalize_path::is_normal(input, true),
            SqlHexDecode => !input
                .windows(2)
                .any(|w| w[0] == b'0' && (w[1] | 0x20) == b'x'),
            _ => false,
        };
        if unchanged {
            Cow::Borrowed(input)
        } else {
            Cow::Owned(self.apply(input))
        }
    }

    /// Applies the transformation.
    pub fn apply(self, input: &[u8]) -> Vec<u8> {
        use Transform::*;
        match self {
            Lowercase => lowercase::apply(input),
            Uppercase => uppercase::apply(input),
            UrlDecode => url_decode::apply(input),
            UrlDecodeUni => url_decode_uni::apply(input),
            UrlEncode => url_encode::apply(input),
            HtmlEntityDecode => html_entity_decode::apply(input),
            JsDecode => js_decode::apply(input),
            CssDecode => css_decode::apply(input),
            CmdLine => cmd_line::apply(input),
            CompressWhitespace => compress_whitespace::apply(input),
            RemoveWhitespace => remove_whitespace::apply(input),
            RemoveNulls => remove_nulls::apply(input),
            ReplaceNulls => replace_nulls::apply(input),
            ReplaceComments => replace_comments::apply(input),
            RemoveComments => remove_comments::apply(input),
            RemoveCommentsChar => remove_comments_char::apply(input),
            NormalizePath => normalize_path::apply(input),
            NormalizePathWin => normalize_path_win::apply(input),
            Base64Decode => base64_decode::apply(input),
            Base64DecodeExt => base64_decode::apply_ext(input),
            Base64Encode => base64_decode::encode(input),
            HexDecode => hex::decode(input),
            HexEncode => hex::encode(input),
            Utf8ToUnicode => utf8_to_unicode::apply(input),
            Length => length::apply(input),
            Sha1 => sha1::apply(input),
            Md5 => md5::apply(input),
            ParityEven7bit => parity::even(input),
            ParityOdd7bit => parity::odd(input),
            ParityZero7bit => parity::zero(input),
            Trim => trim::both(input),
            TrimLeft => trim::left(input),
            TrimRight => trim::right(input),
            EscapeSeqDecode => escape_seq_decode::apply(input),
            SqlHexDecode => sql_hex_decode::apply(input),
        }
    }
}

/// Hex digit value.
pub(crate) fn hexval(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Whitespace as ModSecurity's compress/removeWhitespace see it (C isspace plus NBSP).
pub(crate) fn is_space(c: u8) -> bool {
    is_c_space(c) || c == 0xa0
}

/// C `isspace` in the "C" locale.
pub(crate) fn is_c_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

#[cfg(test)]
mod tests {
    use super::Transform::*;
    use super::*;

    use super::reference_tests::ALL;

    fn t(tr: Transform, input: &[u8]) -> Vec<u8> {
        tr.apply(input)
    }

    #[test]
    fn documented_behaviour() {
        assert_eq!(t(CompressWhitespace, b"a \t\r\n b\xa0c"), b"a b c");
        assert_eq!(t(RemoveWhitespace, b" a b\tc "), b"abc");
        assert_eq!(t(RemoveNulls, b"a\0b"), b"ab");
        assert_eq!(t(ReplaceNulls, b"a\0b"), b"a b");
        assert_eq!(t(RemoveComments, b"a/*x*/b<!--y-->c--z\nd#e"), b"abc");
        assert_eq!(t(RemoveCommentsChar, b"a/*b*/c--d#e"), b"abcde");
        assert_eq!(t(HexEncode, b"A\xff"), b"41ff");
        assert_eq!(t(HexDecode, b"41ff"), b"A\xff");
        assert_eq!(t(SqlHexDecode, b"x=0x414243 y"), b"x=ABC y");
        assert_eq!(t(Length, b"abcd"), b"4");
        assert_eq!(
            t(HexEncode, &t(Sha1, b"abc")),
            b"a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert_eq!(t(Trim, b" \ta b \n"), b"a b");
        assert_eq!(t(TrimLeft, b"  a "), b"a ");
        assert_eq!(t(TrimRight, b" a  "), b" a");
        assert_eq!(t(EscapeSeqDecode, b"a\\n\\x41\\101\\q"), b"a\nAAq");
        assert_eq!(t(NormalizePathWin, b"c:\\a\\..\\b\\.\\c"), b"c:/b/c");
        assert_eq!(t(UrlEncode, b"a b&c"), b"a+b%26c");
        assert_eq!(t(Uppercase, b"aB1"), b"AB1");
        assert_eq!(t(Lowercase, b"AbC\xc9"), b"abc\xc9");
        assert_eq!(t(Base64Encode, b"ab"), b"YWI=");
    }

    #[test]
    fn apply_cow_agrees_with_apply() {
        let alphabet = b"aZ09%+&;#/*-<!>\\ \t\0xX\xc3\xa9u";
        let mut s: u64 = 0x1234_5678_9abc_def1;
        for _ in 0..4000 {
            let input = crate::test_support::random_input(alphabet, &mut s, 12, 5);
            for t in ALL {
                assert_eq!(
                    t.apply_cow(&input).as_ref(),
                    t.apply(&input).as_slice(),
                    "{t:?} {input:?}"
                );
            }
        }
    }

    /// A value without any of a transformation's trigger bytes comes out unchanged.
    #[test]
    fn trigger_bytes_are_complete() {
        let alphabet = b"aZ09%+&;#/*-<!>\\ \t\0xX\xc3\xa9u.,'\"^(\n\r\x0b\xa0";
        let mut s: u64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..20000 {
            let input = crate::test_support::random_input(alphabet, &mut s, 12, 5);
            let have = ByteSet::of(&input);
            for t in ALL {
                if let Some(trig) = t.trigger_bytes() {
                    if !have.intersects(&trig) {
                        assert_eq!(t.apply(&input), input, "{t:?} {input:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn parse_names() {
        assert!(matches!(
            Transform::parse("urlDecodeUni"),
            Some(Parsed::Known(UrlDecodeUni))
        ));
        assert!(matches!(Transform::parse("none"), Some(Parsed::None)));
        assert!(Transform::parse("bogus").is_none());
    }
}
