#!/usr/bin/env python3
"""Generates tests/benign/requests.jsonl: realistic benign requests for the
false-positive test (tests/false_positives.rs).

One JSON object per line:
  {"name": "...", "category": "...", "method": "GET", "uri": "/...",
   "headers": [["Host", "..."], ...], "body_b64": "..."}

Headers are what a browser or API client sends (the test adds Content-Length).  Run
`python3 generate.py` from this directory: it writes requests.jsonl and
crs-pl1-flags.jsonl (benign requests CRS flags at PL1 by design, with the rule and why).
The output is committed so the test does not need Python.  The generator is
deterministic.
"""

import base64
import json
import random
import sys
import urllib.parse

rnd = random.Random(20261125)

BROWSER_UAS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4_1) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4.1 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.6367.82 Mobile Safari/537.36",
]
API_UAS = [
    "okhttp/4.12.0",
    "python-requests/2.31.0",
    "axios/1.6.8",
    "MyShopApp/3.2.1 (iOS 17.4; iPhone15,2)",
    "Go-http-client/2.0",
]
HOSTS = ["shop.example.com", "api.example.com", "www.example.org", "app.example.net"]

FIRST = ["Liam", "Olivia", "Siobhán", "Seán", "José", "Zoë", "Björn", "Aoife", "Noah",
         "Mei", "Ngozi", "Priya", "D'Arcy", "Jean-Luc", "Anne-Marie", "Łukasz", "Oisín"]
LAST = ["O'Brien", "O'Neill", "D'Angelo", "McDonald", "Smith-Jones", "van der Berg",
        "Nguyễn", "Müller", "García Márquez", "O'Connor", "de la Cruz", "Ó Súilleabháin",
        "St. John", "Al-Sayed", "Kowalski"]

COOKIES = [
    "session=9f8e7d6c5b4a39281706f5e4d3c2b1a0; theme=dark",
    "_ga=GA1.2.1234567890.1714000000; _gid=GA1.2.987654321.1714000000; lang=en-GB",
    "sid=s%3AqwErTy12345.abcDEF%2Fghi%2BjklMNO; cookieconsent_status=dismiss",
    "cart=3; currency=EUR; recently_viewed=1234%2C5678%2C9012",
    "OptanonAlertBoxClosed=2024-04-22T10:11:12.345Z; OptanonConsent=isGpcEnabled=0&datestamp=Mon+Apr+22+2024&version=202401.1.0&groups=C0001%3A1%2CC0002%3A0",
    "csrftoken=Zx8Kq2LmN4pR6sT8vW0yA1cE3gI5kM7o; sessionid=h3k5m7p9r1t3v5x7z9b1d3f5",
    "__Host-session=eyJ1aWQiOjQyfQ.ZiZ3Aw.Tq9X_k2m; prefs=%7B%22tz%22%3A%22Europe%2FDublin%22%7D",
    "wp-settings-1=libraryContent%3Dbrowse%26editor%3Dtinymce; wp-settings-time-1=1714000000",
    "PHPSESSID=3u4v5w6x7y8z9a0b1c2d3e4f5g; remember_me=1",
    "JSESSIONID=8A3F2C1D9E7B6A5F4C3D2E1F0A9B8C7D; AWSALB=abcDEF123/ghiJKL456+mnoPQR789==",
]


def jwt(payload):
    h = base64.urlsafe_b64encode(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()).rstrip(b"=")
    p = base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=")
    s = base64.urlsafe_b64encode(bytes(rnd.randrange(256) for _ in range(32))).rstrip(b"=")
    return (h + b"." + p + b"." + s).decode()


out = []


def browser_headers(host=None, cookie=True, accept="text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"):
    h = [
        ["Host", host or rnd.choice(HOSTS)],
        ["User-Agent", rnd.choice(BROWSER_UAS)],
        ["Accept", accept],
        ["Accept-Language", rnd.choice(["en-US,en;q=0.9", "en-GB,en;q=0.8", "de-DE,de;q=0.9,en;q=0.5", "fr-FR,fr;q=0.9", "ga-IE,ga;q=0.9,en-IE;q=0.8"])],
        ["Accept-Encoding", "gzip, deflate, br"],
    ]
    if cookie:
        h.append(["Cookie", rnd.choice(COOKIES)])
    return h


def api_headers(host="api.example.com", token=True):
    h = [
        ["Host", host],
        ["User-Agent", rnd.choice(API_UAS)],
        ["Accept", "application/json"],
    ]
    if token:
        h.append(["Authorization", "Bearer " + jwt({"sub": str(rnd.randrange(10**6)), "scope": "read write", "iat": 1714000000})])
    return h


# Benign requests CRS v4 flags at PL1 by design (ModSecurity does the same): kept in a
# separate file with the rule that fires and why, so the test can show they are CRS's
# call and not the engine's.
CRS_PL1_FLAGS = {
    "json-vnd": (920420, "application/vnd.api+json is not in CRS's default tx.allowed_request_content_type"),
    "code-json-python": (932370, "a blank line followed by print( reads as a Windows command after a newline"),
    "code-form-c": (933160, "printf(...) is in CRS's list of high-risk PHP function calls"),
    "code-json-typescript": (941390, "JavaScript with template literals and console.log: XSS/Node.js/shell rules"),
    "signature-head-of-sales": (932235, "a line starting with 'Head ' looks like the Unix command head after a newline"),
}
flagged = []


def add(name, category, method, uri, headers, body=b""):
    if isinstance(body, str):
        body = body.encode()
    target = out
    extra = {}
    if name in CRS_PL1_FLAGS:
        target = flagged
        extra = {"rule": CRS_PL1_FLAGS[name][0], "reason": CRS_PL1_FLAGS[name][1]}
    target.append({**extra,
        "name": name,
        "category": category,
        "method": method,
        "uri": uri,
        "headers": headers,
        "body_b64": base64.b64encode(body).decode(),
    })


def form(pairs):
    return urllib.parse.urlencode(pairs)


def person():
    return rnd.choice(FIRST), rnd.choice(LAST)


# ---- JSON APIs -------------------------------------------------------------------
for i in range(40):
    f, l = person()
    kind = i % 8
    if kind == 0:
        body = {"firstName": f, "lastName": l, "email": f"{f.lower().replace(chr(39), '')}.{i}@example.com",
                "phone": "+353 (0)1 234 5678", "newsletter": bool(i % 2), "dateOfBirth": "1990-04-0%d" % (i % 9 + 1)}
        uri = "/api/v1/users"
    elif kind == 1:
        body = {"items": [{"sku": "SKU-%04d" % (i * 7), "qty": i % 3 + 1, "price": 19.99 + i},
                          {"sku": "GIFT-CARD", "qty": 1, "price": 25}],
                "coupon": "SPRING-24", "shipping": {"name": f"{f} {l}", "line1": "12 O'Connell St.", "line2": "Apt #4",
                                                    "city": "Dublin", "postcode": "D01 F5P2", "country": "IE"}}
        uri = "/api/v1/orders"
    elif kind == 2:
        body = {"review": {"rating": i % 5 + 1, "title": "Great value, wasn't expecting that!",
                           "text": f"I've bought three of these for my kids' school bags. {f} says they're \"brilliant\" - 10/10 would buy again :)"}}
        uri = "/api/v1/products/%d/reviews" % (1000 + i)
    elif kind == 3:
        body = {"query": "shoes", "filters": {"size": [42, 43], "colour": ["navy", "off-white"], "price": {"min": 10, "max": 99.5}},
                "sort": "-rating", "page": i % 4 + 1, "perPage": 24}
        uri = "/api/v2/search"
    elif kind == 4:
        body = {"event": "page_view", "url": "https://www.example.org/blog/2024/04/what-we-learned?ref=newsletter",
                "referrer": "https://www.google.com/", "ts": 1714000000000 + i, "viewport": {"w": 1440, "h": 900},
                "utm": {"source": "newsletter", "medium": "email", "campaign": "april_2024"}}
        uri = "/collect"
    elif kind == 5:
        body = {"title": "Meeting notes - Q2 planning", "tags": ["planning", "q2", "team-a"],
                "content": "Attendees: Siobhán, Seán & D'Arcy.\nAction items:\n1. Update the roadmap (owner: Seán)\n2. Review budget - 15% over?\n3. Book room 4.12 for Thursday @ 3pm",
                "shared": True, "folderId": None}
        uri = "/api/notes"
    elif kind == 6:
        body = {"settings": {"timezone": "Europe/Dublin", "locale": "en-IE", "notifications": {"email": True, "sms": False},
                             "signature": f"Kind regards,\n{f} {l}\nSales Manager, Example Ltd."}}
        uri = "/api/v1/me/settings"
    else:
        body = {"message": {"to": ["team@example.com"], "subject": "Re: Can't log in since Tuesday?",
                            "body": f"Hi {f},\n\nCould you try clearing your cache and logging in again? If it still doesn't work, send us a screenshot.\n\nThanks,\nSupport"}}
        uri = "/api/v1/support/tickets"
    h = api_headers() + [["Content-Type", "application/json; charset=utf-8"]]
    add(f"json-{i}", "json", "POST", uri, h, json.dumps(body, ensure_ascii=bool(i % 2)))

for i, (uri, acc) in enumerate([
    ("/api/v1/users/42", "application/json"),
    ("/api/v1/orders?status=shipped&since=2024-01-01T00:00:00Z&limit=50", "application/json"),
    ("/api/v1/products?ids=101,102,103,104&fields=name,price,stock", "application/json"),
    ("/api/v2/search?q=women%27s+running+shoes&size=38", "application/json"),
    ("/api/v1/geo/reverse?lat=53.3498&lon=-6.2603", "application/json"),
    ("/api/v1/calendar/events?from=2024-05-01&to=2024-05-31&tz=Europe%2FDublin", "application/json"),
    ("/.well-known/openid-configuration", "application/json"),
    ("/api/v1/files/report-2024-Q1.pdf/metadata", "application/json"),
    ("/api/graphql?operationName=GetUser&variables=%7B%22id%22%3A%2242%22%7D", "application/json"),
    ("/api/v1/users/42/avatar?size=128", "image/avif,image/webp,*/*"),
]):
    h = api_headers()
    h[2] = ["Accept", acc]
    add(f"api-get-{i}", "json", "GET", uri, h)

add("graphql-post", "json", "POST", "/graphql",
    api_headers() + [["Content-Type", "application/json"]],
    json.dumps({"operationName": "GetProduct", "variables": {"id": "1234"},
                "query": "query GetProduct($id: ID!) { product(id: $id) { id name price reviews(first: 5) { rating text } } }"}))
add("json-array", "json", "POST", "/api/v1/batch",
    api_headers() + [["Content-Type", "application/json"]],
    json.dumps([{"op": "add", "path": "/tags/-", "value": "sale"}, {"op": "replace", "path": "/price", "value": 9.99}]))
add("json-unicode", "json", "POST", "/api/v1/translate",
    api_headers() + [["Content-Type", "application/json"]],
    json.dumps({"source": "en", "target": "ja", "text": "Good morning! How's the weather in 東京 today? ☀️"}, ensure_ascii=False))
add("json-nested-deep", "json", "POST", "/api/v1/config",
    api_headers() + [["Content-Type", "application/json"]],
    json.dumps({"a": {"b": {"c": {"d": {"e": {"f": [1, 2, {"g": "h"}]}}}}}, "enabled": False, "ratio": 0.75}))
add("json-vnd", "json", "POST", "/api/v1/events",
    api_headers() + [["Content-Type", "application/vnd.api+json"]],
    json.dumps({"data": {"type": "events", "attributes": {"name": "Summer BBQ", "starts": "2024-07-06T17:00:00+01:00"}}}))

add("signature-head-of-sales", "json", "POST", "/api/v1/me/settings",
    api_headers() + [["Content-Type", "application/json"]],
    json.dumps({"settings": {"signature": "Kind regards,\nPat O'Brien\nHead of Sales | Example Ltd."}}))

# ---- HTML forms (urlencoded) -----------------------------------------------------
FORM_TEXTS = [
    "I don't think it's the right size - could you swap it for a 10?",
    "Loved it!!! Will definitely come back :-)",
    "Please deliver to the back door; the front one's broken.",
    "The O'Reilly book (2nd ed.) arrived damaged - page 42-47 torn.",
    "Is this compatible with Windows 11 & macOS 14?",
    "Price: $49.99 + tax = ~$54, right?",
    "We're a team of 5 (maybe 6) people; is there a discount?",
    "Call me on 087-123-4567 after 6 p.m.",
    "My order #12345 hasn't arrived yet... any update?",
    "50% off? That's amazing - is it valid until Sunday?",
    "\"Best coffee in town\" - my mum",
    "Allergies: nuts, dairy & gluten. Thanks!",
    "It's 5 o'clock somewhere :)",
    "Can I pay with PayPal/Apple Pay?",
    "Re: invoice INV-2024-0042 - wrong VAT number (IE1234567T)",
]
for i in range(30):
    f, l = person()
    kind = i % 6
    if kind == 0:
        pairs = [("first_name", f), ("last_name", l), ("email", f"{f.lower()}@example.ie".replace("'", "")),
                 ("password", "c0rrect-H0rse-Battery!"), ("password_confirm", "c0rrect-H0rse-Battery!"), ("terms", "on")]
        uri = "/account/register"
    elif kind == 1:
        pairs = [("username", f"{f}.{l}".lower().replace(" ", "")), ("password", "Tr0ub4dor&3"), ("remember", "1"),
                 ("next", "/account/orders?page=2")]
        uri = "/login"
    elif kind == 2:
        pairs = [("name", f"{f} {l}"), ("email", "someone@example.com"), ("subject", "Question about my order"),
                 ("message", FORM_TEXTS[i % len(FORM_TEXTS)])]
        uri = "/contact"
    elif kind == 3:
        pairs = [("address1", "Flat 3, 27 St. Stephen's Green"), ("address2", ""), ("city", "Dublin 2"),
                 ("county", "Co. Dublin"), ("eircode", "D02 XY45"), ("phone", "+353 1 555 0199"), ("delivery_notes", FORM_TEXTS[(i + 3) % len(FORM_TEXTS)])]
        uri = "/checkout/address"
    elif kind == 4:
        pairs = [("comment", FORM_TEXTS[(i + 7) % len(FORM_TEXTS)]), ("author", f"{f} {l}"), ("post_id", str(300 + i)),
                 ("_token", "a8f5f167f44f4964e6c998dee827110c")]
        uri = "/blog/comments"
    else:
        pairs = [("q", FORM_TEXTS[(i + 11) % len(FORM_TEXTS)]), ("category", "all"), ("sort", "relevance")]
        uri = "/search"
    h = browser_headers() + [["Content-Type", "application/x-www-form-urlencoded"],
                             ["Origin", "https://www.example.org"], ["Referer", "https://www.example.org" + uri]]
    add(f"form-{i}", "form", "POST", uri, h, form(pairs))

# ---- code snippets in bodies -----------------------------------------------------
SNIPPETS = [
    ("rust", "fn main() {\n    let v: Vec<u32> = (1..=10).collect();\n    println!(\"sum = {}\", v.iter().sum::<u32>());\n}"),
    ("python", "def fib(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n\nprint([fib(i) for i in range(10)])"),
    ("go", "package main\n\nimport \"fmt\"\n\nfunc main() {\n\tfor i := 0; i < 3; i++ {\n\t\tfmt.Println(\"hello\", i)\n\t}\n}"),
    ("c", "#include <stdio.h>\n\nint main(void) {\n    int x = 42;\n    printf(\"%d\\n\", x);\n    return 0;\n}"),
    ("typescript", "interface User { id: number; name: string }\nconst greet = (u: User): string => `Hello, ${u.name}!`;\nconsole.log(greet({ id: 1, name: 'Ada' }));"),
    ("java", "public class Hello {\n    public static void main(String[] args) {\n        System.out.println(\"Hello, world\");\n    }\n}"),
    ("haskell", "quicksort :: Ord a => [a] -> [a]\nquicksort [] = []\nquicksort (p:xs) = quicksort [x | x <- xs, x < p] ++ [p] ++ quicksort [x | x <- xs, x >= p]"),
    ("css", ".card {\n  display: grid;\n  grid-template-columns: repeat(3, 1fr);\n  gap: 1rem;\n  color: #333;\n}"),
    ("yaml", "services:\n  web:\n    image: nginx:1.25\n    ports:\n      - \"8080:80\"\n    restart: unless-stopped"),
    ("json", "{\n  \"name\": \"my-app\",\n  \"version\": \"1.0.0\",\n  \"scripts\": { \"build\": \"tsc -p .\", \"test\": \"jest\" }\n}"),
    ("ruby", "class Greeter\n  def initialize(name)\n    @name = name.capitalize\n  end\n\n  def greet\n    \"Hi #{@name}!\"\n  end\nend"),
    ("kotlin", "data class Point(val x: Int, val y: Int)\nfun main() {\n    val p = Point(1, 2)\n    println(p.copy(y = 3))\n}"),
    ("swift", "struct Counter {\n    var count = 0\n    mutating func increment() { count += 1 }\n}"),
    ("regex-question", "How do I match a date like 2024-04-22 with a regex? I tried \\d{4}-\\d{2}-\\d{2} but it also matches 9999-99-99."),
    ("toml", "[package]\nname = \"demo\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\nserde = { version = \"1\", features = [\"derive\"] }"),
]
for i, (lang, code) in enumerate(SNIPPETS):
    if i % 3 == 0:
        h = browser_headers() + [["Content-Type", "application/x-www-form-urlencoded"]]
        add(f"code-form-{lang}", "code", "POST", "/forum/topics/88/replies", h,
            form([("body", f"Here's what I ended up with:\n\n```{lang}\n{code}\n```\n\nHope that helps!"), ("topic", "88")]))
    else:
        h = api_headers() + [["Content-Type", "application/json"]]
        add(f"code-json-{lang}", "code", "POST", "/api/v1/gists", h,
            json.dumps({"description": f"{lang} example", "public": True, "files": {f"example.{lang}": {"content": code}}}))

# ---- markdown ----------------------------------------------------------------------
MARKDOWN = [
    "# Release notes 2.4\n\n## Fixed\n- Login no longer fails when the password contains a `#`\n- Exports respect the user's timezone\n\n## Changed\n* Dropped support for IE 11",
    "Thanks for the report! Could you try **v2.3.1** and let me know?\n\n> It's still broken for me on Firefox.\n\nSee [the docs](https://docs.example.com/troubleshooting#cache) for details.",
    "| Plan | Price | Users |\n|------|------:|------:|\n| Free | €0 | 1 |\n| Team | €12/mo | 10 |\n| Business | €49/mo | unlimited |",
    "1. Preheat the oven to 180°C (350°F)\n2. Mix 200g flour, 2 eggs & 1/2 cup milk\n3. Bake for 25-30 min\n\n_Tip:_ don't open the oven door!",
    "![diagram](https://cdn.example.com/img/arch-v2.png \"Architecture\")\n\nThe gateway talks to the *auth* and *billing* services over gRPC.",
    "- [x] Write tests\n- [ ] Update CHANGELOG.md\n- [ ] Tag v1.2.0\n\ncc @maria @jonas",
    "Quick question: is `Option<&str>` better than `&Option<String>` here? ~~I think so~~ not sure anymore.",
    "### Steps to reproduce\n1. Go to *Settings → Billing*\n2. Click \"Download invoice\"\n3. Observe: 404\n\n**Expected:** a PDF\n**Actual:** \"Page not found\"",
    "Footnotes work too[^1].\n\n[^1]: Like this one.\n\n---\n\nHorizontal rules as well.",
    "Happy birthday Seán!!! 🎉🎂 Hope you have a great day - drinks at O'Donoghue's at 8?",
    "The formula is E = mc^2, and (a + b)^2 = a^2 + 2ab + b^2 :)",
    "Use `git rebase -i HEAD~3` to squash the last three commits, then push with `--force-with-lease`.",
]
for i, md in enumerate(MARKDOWN):
    if i % 2:
        h = api_headers() + [["Content-Type", "application/json"]]
        add(f"markdown-json-{i}", "markdown", "POST", "/api/v1/issues/17/comments", h, json.dumps({"body": md}))
    else:
        h = browser_headers() + [["Content-Type", "application/x-www-form-urlencoded"]]
        add(f"markdown-form-{i}", "markdown", "POST", "/wiki/edit/Release_Notes", h,
            form([("text", md), ("summary", "typo fixes"), ("minor", "1")]))

# ---- search queries with punctuation ----------------------------------------------
QUERIES = [
    "c++ tutorial", "what's new in python 3.12", "rock & roll hall of fame", "50% off shoes",
    "node.js vs deno", "john.doe@example.com", "C# async/await", "(a+b)^2", "1/2 cup flour in grams",
    "o'reilly books", "\"exact phrase\" search", "t-shirt size m/l", "AT&T customer service",
    "how to use ; in javascript", "#hashtag trends", "price < 100", "5'11\" in cm", "sci-fi & fantasy",
    "dr. who: series 1", "café près de moi", "straße münchen", "question?", "wait... what!",
    "best pizza @ dublin", "1+1=2", "self-driving cars (2024)", "mother's day gifts", "don't stop believin'",
    "$100 budget laptop", "rust's borrow checker", "it's a bird, it's a plane", "100 Jahre ~ ein Jahrhundert",
    "new york -> boston train", "[beta] feature flags", "{curly braces} in latex", "where is O'Hare airport",
    "select a dress for a wedding", "how to drop a class at university", "union station parking",
    "ORDER of the phoenix",
]
for i, q in enumerate(QUERIES):
    enc = urllib.parse.quote_plus(q) if i % 3 else urllib.parse.quote(q)
    uri = f"/search?q={enc}&page={i % 5 + 1}"
    if i % 4 == 0:
        uri += "&lang=en&safe=1"
    add(f"search-{i}", "search", "GET", uri, browser_headers())

# ---- multipart uploads -----------------------------------------------------------
PNG = bytes.fromhex("89504e470d0a1a0a0000000d49484452000000100000001008060000001ff3ff61")
JPEG = bytes.fromhex("ffd8ffe000104a46494600010101004800480000ffdb004300")
PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n"


def multipart(parts, boundary):
    b = b""
    for name, filename, ctype, data in parts:
        b += b"--" + boundary.encode() + b"\r\n"
        disp = f'Content-Disposition: form-data; name="{name}"'
        if filename is not None:
            disp += f'; filename="{filename}"'
        b += disp.encode() + b"\r\n"
        if ctype:
            b += f"Content-Type: {ctype}\r\n".encode()
        b += b"\r\n" + (data.encode() if isinstance(data, str) else data) + b"\r\n"
    b += b"--" + boundary.encode() + b"--\r\n"
    return b


UPLOADS = [
    ("avatar.png", "image/png", PNG + bytes(rnd.randrange(256) for _ in range(400))),
    ("holiday photo.jpg", "image/jpeg", JPEG + bytes(rnd.randrange(256) for _ in range(600))),
    ("invoice-2024-04.pdf", "application/pdf", PDF + bytes(rnd.randrange(32, 127) for _ in range(300))),
    ("contacts.csv", "text/csv", "name,email,phone\n\"O'Brien, Pat\",pat@example.com,+353 1 555 0100\nMüller,m@example.de,+49 30 1234\n"),
    ("notes.txt", "text/plain", "Shopping list:\n- eggs\n- milk (2%)\n- bread & butter\n"),
    ("CV - Aoife Ní Bhriain.docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
     b"PK\x03\x04\x14\x00\x06\x00\x08\x00" + bytes(rnd.randrange(256) for _ in range(500))),
    ("data.json", "application/json", json.dumps({"rows": [[1, "a"], [2, "b"]]})),
    ("scan_0001.tiff", "image/tiff", b"II*\x00" + bytes(rnd.randrange(256) for _ in range(500))),
]
for i in range(20):
    fname, ctype, data = UPLOADS[i % len(UPLOADS)]
    boundary = rnd.choice(["----WebKitFormBoundary7MA4YWxkTrZu0gW" + str(i), "---------------------------3942184732" + str(i),
                           "----geckoformboundary" + "%032x" % rnd.getrandbits(128)])
    f, l = person()
    parts = [("title", None, None, f"Upload from {f} {l}"),
             ("description", None, None, FORM_TEXTS[i % len(FORM_TEXTS)]),
             ("file", fname, ctype, data)]
    if i % 3 == 0:
        parts.append(("tags", None, None, "work,2024,q2"))
    h = browser_headers() + [["Content-Type", f"multipart/form-data; boundary={boundary}"]]
    add(f"multipart-{i}", "multipart", "POST", "/upload", h, multipart(parts, boundary))

# ---- cookies and bearer tokens -----------------------------------------------------
for i in range(20):
    if i % 2:
        h = browser_headers(cookie=False) + [["Cookie", "; ".join(rnd.sample(COOKIES, 3))]]
        add(f"cookies-{i}", "cookies", "GET", f"/account/orders?page={i}", h)
    else:
        tok = jwt({"sub": f"user-{i}", "name": "Seán O'Brien", "roles": ["reader", "editor"],
                   "email": "sean@example.ie", "exp": 1714003600 + i})
        h = api_headers(token=False) + [["Authorization", f"Bearer {tok}"], ["X-Request-ID", "%032x" % rnd.getrandbits(128)]]
        add(f"bearer-{i}", "tokens", "GET", f"/api/v1/me?include=teams,preferences&v={i}", h)
add("basic-auth", "tokens", "GET", "/api/v1/status",
    api_headers(token=False) + [["Authorization", "Basic " + base64.b64encode(b"deploy-bot:s3cr3t!pass").decode()]])
add("api-key", "tokens", "GET", "/api/v1/reports/weekly?format=json",
    api_headers(token=False) + [["X-API-Key", "sk_live_51HqA2bC3dE4fG5hI6jK7lM8nO9pQ0rS"]])
add("cors-preflight", "tokens", "OPTIONS", "/api/v1/orders",
    [["Host", "api.example.com"], ["User-Agent", BROWSER_UAS[0]], ["Accept", "*/*"],
     ["Origin", "https://www.example.org"], ["Access-Control-Request-Method", "POST"],
     ["Access-Control-Request-Headers", "authorization,content-type"]])

# ---- long query strings ------------------------------------------------------------
for i in range(15):
    params = [("utm_source", "newsletter"), ("utm_medium", "email"), ("utm_campaign", f"spring_sale_2024_{i}"),
              ("utm_content", "hero-banner"), ("fbclid", "IwAR" + "".join(rnd.choice("abcdefghijkLMNOPQ0123456789_-") for _ in range(60))),
              ("gclid", "Cj0KCQjw" + "".join(rnd.choice("ABCDEFabcdef0123456789") for _ in range(70)))]
    params += [(f"filter[{k}]", v) for k, v in [("brand", "acme,globex,initech"), ("colour", "red|blue"), ("size", "S,M,L,XL")]]
    params += [("ids[]", str(1000 + j)) for j in range(i * 3)]
    params += [("sort", "price_asc"), ("per_page", "48"), ("view", "grid"), ("ref", "https://www.example.org/landing?x=1&y=2")]
    add(f"long-query-{i}", "long-query", "GET", "/products?" + form(params), browser_headers())
add("very-long-query", "long-query", "GET",
    "/analytics/pixel.gif?" + form([("e", "pv"), ("url", "https://www.example.org/a/very/long/path/to/a/page-about-something-interesting?with=params&and=more"),
                                    ("title", "Something interesting | Example Blog"), ("res", "2560x1440"), ("cd", "24"),
                                    ("ua_tokens", ",".join("tok%d" % j for j in range(80))), ("cid", "%032x" % rnd.getrandbits(128))]),
    browser_headers(accept="image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8"))

# ---- plain browsing ----------------------------------------------------------------
PAGES = ["/", "/index.html", "/about-us", "/blog/2024/04/22/whats-new-in-2-4", "/products/running-shoes-mens-42",
         "/static/css/main.3f2a9c1e.css", "/static/js/app.7b6c5d.js", "/images/logo@2x.png", "/fonts/inter-var.woff2",
         "/favicon.ico", "/robots.txt", "/sitemap.xml", "/en-ie/help/returns-and-refunds", "/category/women/shoes?sort=new",
         "/product/123456/o-neills-gaa-jersey", "/careers/software-engineer-(remote)", "/events/2024/dublin-meetup",
         "/docs/v2/getting-started/installation", "/u/s%C3%A9an", "/feeds/atom.xml"]
for i, p in enumerate(PAGES):
    acc = "text/css,*/*;q=0.1" if p.endswith(".css") else "*/*" if p.endswith((".js", ".woff2", ".ico")) else \
        "image/avif,image/webp,*/*" if p.endswith(".png") else "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
    h = browser_headers(accept=acc)
    if i % 3 == 0:
        h.append(["Referer", "https://www.google.com/"])
    if i % 4 == 0:
        h.append(["If-None-Match", "W/\"5e1-18f0a2b3c4d\""])
        h.append(["If-Modified-Since", "Mon, 22 Apr 2024 10:00:00 GMT"])
    add(f"page-{i}", "browse", "GET" if i % 7 else "HEAD", p, h)

# ---- XML -------------------------------------------------------------------------------
add("xml-soap", "xml", "POST", "/soap/InventoryService",
    api_headers(token=False) + [["Content-Type", "text/xml; charset=utf-8"], ["SOAPAction", "\"urn:GetStock\""]],
    "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<soap:Envelope xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\">"
    "<soap:Body><GetStock xmlns=\"urn:inventory\"><sku>SKU-0042</sku><warehouse>Dublin &amp; Cork</warehouse></GetStock></soap:Body></soap:Envelope>")
add("xml-order", "xml", "POST", "/api/orders.xml",
    api_headers() + [["Content-Type", "application/xml"]],
    "<?xml version=\"1.0\"?><order id=\"77\"><customer>Pat O'Brien</customer><item sku=\"A-1\" qty=\"2\"/><note>Ring twice, please.</note></order>")

if __name__ == "__main__":
    names = set()
    assert len(flagged) == len(CRS_PL1_FLAGS)
    with open("requests.jsonl", "w") as f1, open("crs-pl1-flags.jsonl", "w") as f2:
        for f, rows in ((f1, out), (f2, flagged)):
            for r in rows:
                assert r["name"] not in names, r["name"]
                names.add(r["name"])
                f.write(json.dumps(r, ensure_ascii=True) + "\n")
