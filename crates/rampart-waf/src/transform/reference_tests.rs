//! Every transformation against ModSecurity's behaviour (reference manual plus what
//! libmodsecurity3's implementation does at the edges), asserting exact output bytes.
//! One table per transformation; each row is `(input, expected output)`.

use super::Transform::{self, *};

/// Every transformation, once (the other transformation tests iterate over it too).
pub(super) const ALL: [Transform; 35] = [
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
];

fn check(t: Transform, rows: &[(&[u8], &[u8])]) {
    for (input, want) in rows {
        let got = t.apply(input);
        assert_eq!(
            got.as_slice(),
            *want,
            "t:{t:?} on {:?}: got {:?}, want {:?}",
            String::from_utf8_lossy(input),
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(want)
        );
        // The borrowing fast path must agree byte for byte.
        assert_eq!(t.apply_cow(input).as_ref(), *want, "apply_cow t:{t:?}");
    }
}

#[test]
fn lowercase_and_uppercase_are_ascii_only() {
    check(
        Lowercase,
        &[
            (b"HeLLo WORLD 123", b"hello world 123"),
            (b"\xc9T\xc9", b"\xc9t\xc9"),
            (b"", b""),
        ],
    );
    check(
        Uppercase,
        &[(b"select 1", b"SELECT 1"), (b"\xe9a", b"\xe9A")],
    );
}

#[test]
fn url_decode() {
    check(
        UrlDecode,
        &[
            (b"a%20b+c", b"a b c"),
            (b"%3Cscript%3e", b"<script>"),
            (b"%00x", b"\x00x"),
            // Invalid or truncated escapes stay as they are.
            (b"100%zz%4", b"100%zz%4"),
            (b"%", b"%"),
            (b"%u0041", b"%u0041"),
        ],
    );
}

#[test]
fn url_decode_uni() {
    check(
        UrlDecodeUni,
        &[
            (b"%u0041%U0042+%43", b"AB C"),
            // Without a unicode map the low byte is used...
            (b"%u2215", b"\x15"),
            // ...except full-width ASCII (U+FF01–U+FF5E), which folds to ASCII.
            (b"%uff1cscript%uFF1E", b"<script>"),
            (b"%u12", b"%u12"),
            (b"%u12zz", b"%u12zz"),
            (b"50%", b"50%"),
        ],
    );
}

#[test]
fn url_encode_keeps_only_alnum_and_star() {
    check(
        UrlEncode,
        &[
            (b"a b&c", b"a+b%26c"),
            (b"a-b.c_d*~\xff", b"a%2db%2ec%5fd*%7e%ff"),
            (b"", b""),
        ],
    );
}

#[test]
fn html_entity_decode() {
    check(
        HtmlEntityDecode,
        &[
            (b"&lt;a&#x41;&#66&quot;&foo;", b"<aAB\"&foo;"),
            (b"&AMP;&Gt;&nbsp;", b"&>\xa0"),
            (b"&#X3C;&#0060;", b"<<"),
            // Numeric entities keep the low byte; huge ones saturate like strtol.
            (b"&#321;", b"A"),
            (b"&#99999999999999999999;", b"\xff"),
            (b"&#;&#x;&", b"&#;&#x;&"),
            // The name runs over all alphanumerics: `&ltb` is not `&lt` + `b`.
            (b"a&ltb&lt b", b"a&ltb< b"),
        ],
    );
}

#[test]
fn js_decode() {
    check(
        JsDecode,
        &[
            (b"\\x41\\u0042\\103\\n\\q", b"ABC\nq"),
            (b"\\uff1c\\u0061", b"<a"),
            (
                b"\\a\\b\\f\\r\\t\\v\\'\\\"\\\\\\?",
                b"\x07\x08\x0c\r\t\x0b'\"\\?",
            ),
            // Three octal digits only when the value fits in a byte.
            (b"\\400", b" 0"),
            (b"\\0", b"\x00"),
            // Only lower-case \x and \u are escapes; \X and \U just lose the backslash.
            (b"\\X41\\U0041", b"X41U0041"),
            (b"\\x4", b"x4"),
            (b"end\\", b"end\\"),
        ],
    );
}

#[test]
fn css_decode() {
    check(
        CssDecode,
        &[
            (b"\\6a \\61vascript\\:", b"javascript:"),
            (b"\\00003c", b"<"),
            (b"\\0ff1c", b"<"),
            (b"\\ff1c", b"<"),
            (b"\\1ff1c", b"\x1c"),
            (b"a\\\nb", b"ab"),
            (b"\\z", b"z"),
            (b"x\\", b"x"),
            (b"\\41\x0bB", b"AB"),
        ],
    );
}

#[test]
fn escape_seq_decode() {
    check(
        EscapeSeqDecode,
        &[
            (b"a\\n\\x41\\101\\q", b"a\nAAq"),
            (
                b"\\a\\b\\f\\r\\t\\v\\\\\\?\\'\\\"",
                b"\x07\x08\x0c\r\t\x0b\\?'\"",
            ),
            (b"\\X4a", b"J"),
            (b"\\xZZ", b"xZZ"),
            (b"\\777", b"\xff"),
            (b"end\\", b"end\\"),
        ],
    );
}

#[test]
fn cmd_line() {
    check(
        CmdLine,
        &[
            (
                b"C:\\Windows\\SYSTEM32\\cmd.exe /c \"dir\"",
                b"c:windowssystem32cmd.exe/c dir",
            ),
            (b"w'h'o^am\\i", b"whoami"),
            (b"ls   -la ,; /etc", b"ls -la/etc"),
            (b"echo\t\r\n(x)", b"echo(x)"),
            (b"a\x0bb", b"a\x0bb"),
        ],
    );
}

#[test]
fn whitespace_transformations() {
    check(
        CompressWhitespace,
        &[
            (b"a \t\r\n b\xa0c", b"a b c"),
            (b"  x  ", b" x "),
            (b"\x0b\x0c", b" "),
        ],
    );
    check(RemoveWhitespace, &[(b" a b\tc \xa0d\x0b", b"abcd")]);
    check(
        Trim,
        &[
            (b" \ta b \n", b"a b"),
            (b"\xa0x\xa0", b"\xa0x\xa0"),
            (b"   ", b""),
        ],
    );
    check(TrimLeft, &[(b"  a ", b"a "), (b"\x0bx", b"x")]);
    check(TrimRight, &[(b" a  ", b" a"), (b"x\r\n", b"x")]);
}

#[test]
fn nulls() {
    check(RemoveNulls, &[(b"a\0b\0\0", b"ab"), (b"", b"")]);
    check(ReplaceNulls, &[(b"a\0b\0", b"a b ")]);
}

#[test]
fn comments() {
    check(
        ReplaceComments,
        &[
            (b"SELECT/**/1", b"SELECT 1"),
            (b"a/*x*/b/*y", b"a b "),
            (b"a*/b", b"a*/b"),
            (b"--x#y", b"--x#y"),
        ],
    );
    check(
        RemoveComments,
        &[
            (b"a/*x*/b<!--y-->c", b"abc"),
            // `--` and `#` end the value.
            (b"1 OR 1=1-- comment\nmore", b"1 OR 1=1"),
            (b"x#y\nz", b"x"),
            (b"a/*unterminated", b"a "),
            // The byte after a comment's end is copied unchecked (ModSecurity).
            (b"/*a*/#x", b"#x"),
        ],
    );
    check(
        RemoveCommentsChar,
        &[(b"a/*b*/c--d#e<!--f-->", b"abcdef"), (b"-x", b"-x")],
    );
}

#[test]
fn paths() {
    check(
        NormalizePath,
        &[
            (b"/a/b/../c/./d", b"/a/c/d"),
            (b"/a//b/", b"/a/b/"),
            (b"/../../etc/passwd", b"/etc/passwd"),
            (b"a/../../b", b"../b"),
            (b"/a/b/..", b"/a/"),
            (b"", b""),
        ],
    );
    check(
        NormalizePathWin,
        &[
            (b"c:\\a\\..\\b\\.\\c", b"c:/b/c"),
            (b"\\..\\boot.ini", b"/boot.ini"),
        ],
    );
}

#[test]
fn base64() {
    check(
        Base64Decode,
        &[
            (b"Zm9vYmFy", b"foobar"),
            (b"Zm9vYg==", b"foob"),
            (b"Zm9vYg", b"foob"),
            // Stops at the first character outside the alphabet.
            (b"Zm9v!YmFy", b"foo"),
        ],
    );
    check(
        Base64DecodeExt,
        &[(b"Zm9v!Ym.Fy", b"foobar"), (b"Z m9v", b"foo")],
    );
    check(
        Base64Encode,
        &[
            (b"ab", b"YWI="),
            (b"foobar", b"Zm9vYmFy"),
            (b"\xff", b"/w=="),
            (b"", b""),
        ],
    );
}

#[test]
fn hex() {
    check(HexEncode, &[(b"A\xff\x00", b"41ff00")]);
    check(
        HexDecode,
        &[(b"41ff", b"A\xff"), (b"4142F", b"AB"), (b"4A4a", b"JJ")],
    );
    check(
        SqlHexDecode,
        &[
            (b"x=0x414243 y", b"x=ABC y"),
            (b"0X6a6B", b"jk"),
            (b"0x4", b"0x4"),
            (b"0x41z", b"Az"),
        ],
    );
}

#[test]
fn utf8_to_unicode() {
    check(
        Utf8ToUnicode,
        &[
            (b"caf\xc3\xa9", b"caf%u00e9"),
            ("€".as_bytes(), b"%u20ac"),
            ("😀".as_bytes(), b"%u1f600"),
            (b"ascii", b"ascii"),
            (b"bad\xc3", b"bad\xc3"),
        ],
    );
}

#[test]
fn digests_and_length() {
    let hex = |t: Transform, i: &[u8]| HexEncode.apply(&t.apply(i));
    assert_eq!(
        hex(Sha1, b"abc"),
        b"a9993e364706816aba3e25717850c26c9cd0d89d"
    );
    assert_eq!(hex(Sha1, b""), b"da39a3ee5e6b4b0d3255bfef95601890afd80709");
    assert_eq!(hex(Md5, b""), b"d41d8cd98f00b204e9800998ecf8427e");
    assert_eq!(hex(Md5, b"abc"), b"900150983cd24fb0d6963f7d28e17f72");
    assert_eq!(
        hex(
            Md5,
            b"12345678901234567890123456789012345678901234567890123456789012345678901234567890"
        ),
        b"57edf4a22be3c955ac49da2e2107b67a"
    );
    check(Length, &[(b"abcd", b"4"), (b"", b"0"), (b"\xff\xfe", b"2")]);
}

#[test]
fn parity() {
    // 'A' = 0x41 has two bits set, 'C' = 0x43 three.
    check(ParityEven7bit, &[(b"AC", b"A\xc3")]);
    check(ParityOdd7bit, &[(b"AC", b"\xc1C")]);
    check(ParityZero7bit, &[(b"\xc1\xc3a", b"ACa")]);
}

#[test]
fn every_transformation_has_a_table() {
    // `ALL` must list every variant: the exhaustive match below does not compile otherwise
    // (and a transformation added without a row above fails the count).
    for t in ALL {
        // Exhaustive match: a new variant is a compile error until it is listed.
        match t {
            Lowercase | Uppercase | UrlDecode | UrlDecodeUni | UrlEncode | HtmlEntityDecode
            | JsDecode | CssDecode | CmdLine | CompressWhitespace | RemoveWhitespace
            | RemoveNulls | ReplaceNulls | ReplaceComments | RemoveComments
            | RemoveCommentsChar | NormalizePath | NormalizePathWin | Base64Decode
            | Base64DecodeExt | Base64Encode | HexDecode | HexEncode | Utf8ToUnicode | Length
            | Sha1 | Md5 | ParityEven7bit | ParityOdd7bit | ParityZero7bit | Trim | TrimLeft
            | TrimRight | EscapeSeqDecode | SqlHexDecode => {}
        }
    }
    assert_eq!(ALL.len(), 35);
}
