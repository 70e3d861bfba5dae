#!/usr/bin/python3
"""Render single-line text images for PP-OCRv4 recognizer accuracy checks.

usage: /usr/bin/python3 scripts/ocr/make_lines.py OUT_DIR [--n 200] [--seed 0] [--style clean|hard]
                                                       [--keys KEYS.txt] [--png 8]

Writes into OUT_DIR:
  x.npy       float32 [N, 3, 48, 320]: PP-OCR rec preprocessing (BGR channel order as cv2 reads,
              resize to height 48 keeping the aspect ratio, width = min(320, ceil(48*w/h)),
              (x/255 - 0.5)/0.5, CHW, right side padded with zeros to width 320)
  labels.txt  one label per line, in the order of x.npy
  line_XXX.png  the first --png rendered images (before preprocessing), for eyeballing

Text: 1-4 items, each a word (from /usr/share/dict/words when present, else a built-in list, in lower,
Capitalized or UPPER case) or a number-like token (date, time, price, percentage, integer, decimal);
5-25 characters; only characters present in ppocr_keys_v1.txt (when --keys is given or found
in the default cache). Fonts: DejaVu Sans/Serif/Mono (regular and bold), 28-40 px; dark
text on a light background with small random offsets, a slight tint and Gaussian noise.
--style hard (a harder, more quantization-sensitive set): lower contrast, Gaussian blur, an illumination
gradient, stronger noise and up to 32 characters.

Needs Debian's python3 with python3-numpy, python3-pil and fonts-dejavu-core (scripts/setup-deps.sh).
Deterministic for a given --seed (and word list).
"""
import argparse
import math
import os
import random
import sys

try:
    import numpy as np
    from PIL import Image, ImageDraw, ImageFilter, ImageFont
except ImportError as e:  # e.g. a python3 other than Debian's first on PATH
    sys.stderr.write("make_lines: %s (%s): run it with Debian's /usr/bin/python3 and apt-get install "
                     "python3-numpy python3-pil fonts-dejavu-core\n" % (e, sys.executable))
    sys.exit(2)

FONT_DIR = "/usr/share/fonts/truetype/dejavu"
FONTS = [
    "DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf",
    "DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf",
]  # exactly fonts-dejavu-core's six, so a seed gives the same data on any machine with that package
H, W = 48, 320

BUILTIN_WORDS = """
the of and to in is was for on are with as his they at be this from have or by one had not but what all
were when we there can an your which their said if do will each about how up out them then she many some
so these would other into has more her two like him see time could no make than first been its who now
people my made over did down only way find use may water long little very after words called just where
most know get through back much before go good new write our used me man too any day same right look
think also around another came come work three word must because does part even place well such here
take why things help put years different away again off went old number great tell men say small every
found still between name should home big give air line set own under read last never us left end along
while might next sound below saw something thought both few those always looked show large often together
asked house world going want school important until form food keep children feet land side without boy
once animals life enough took sometimes four head above kind began almost live page got earth need far
hand high year mother light parts country father let night following picture being study second eyes
soon times story boys since white days ever paper hard near sentence better best across during today
others however sure means knew try told young miles sun ways thing whole hear example heard several change
answer room sea against top turned learn point city play toward five using himself usually money order
market price total invoice account street road station office report quality north south east west
""".split()

MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


def default_keys():
    base = os.environ.get("PTQ_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "ptq-tool")
    p = os.path.join(base, "ocr", "ocr-models-1.4.2", "package", "assets", "ppocr_keys_v1.txt")
    return p if os.path.isfile(p) else None


def load_charset(keys_path):
    if keys_path is None:
        return None
    with open(keys_path, encoding="utf-8") as f:
        chars = set(f.read().split("\n"))
    chars.add(" ")  # the model's last class
    return {c for c in chars if len(c) == 1}


def load_words(allowed):
    words = []
    path = "/usr/share/dict/words"
    if os.path.isfile(path):
        with open(path, encoding="utf-8", errors="replace") as f:
            for w in f:
                w = w.strip()
                if 2 <= len(w) <= 10 and w.isascii() and w.isalpha():
                    words.append(w.lower())
    if len(words) < 1000:
        words = list(BUILTIN_WORDS)
    words = sorted(set(words))
    if allowed is not None:
        words = [w for w in words if all(c in allowed for c in w) and all(c.upper() in allowed for c in w)]
    return words


def number_token(rng):
    k = rng.randrange(8)
    if k == 0:
        return "%04d-%02d-%02d" % (rng.randint(1950, 2030), rng.randint(1, 12), rng.randint(1, 28))
    if k == 1:
        return "%02d/%02d/%04d" % (rng.randint(1, 28), rng.randint(1, 12), rng.randint(1950, 2030))
    if k == 2:
        return "%d %s %d" % (rng.randint(1, 28), rng.choice(MONTHS), rng.randint(1950, 2030))
    if k == 3:
        return "$%d.%02d" % (rng.choice([rng.randint(0, 99), rng.randint(100, 9999)]), rng.randint(0, 99))
    if k == 4:
        return "%02d:%02d" % (rng.randint(0, 23), rng.randint(0, 59))
    if k == 5:
        return "%d%%" % rng.randint(0, 100)
    if k == 6:
        return str(rng.choice([rng.randint(0, 99), rng.randint(100, 99999), rng.randint(10**5, 10**7)]))
    return "%d.%d" % (rng.randint(0, 999), rng.randint(0, 99))


def word_token(rng, words):
    w = rng.choice(words)
    r = rng.random()
    if r < 0.55:
        return w
    if r < 0.9:
        return w.capitalize()
    return w.upper()


def make_text(rng, words, allowed, max_len=25):
    while True:
        n = rng.randint(1, 4 if max_len <= 25 else 6)
        toks = [number_token(rng) if rng.random() < 0.3 else word_token(rng, words) for _ in range(n)]
        s = " ".join(toks)
        if rng.random() < 0.15:
            s += rng.choice([".", ",", ":", "!", "?"])
        if 5 <= len(s) <= max_len and (allowed is None or all(c in allowed for c in s)):
            return s


def render(rng, text, fonts, hard=False):
    font_file = rng.choice(fonts)
    size = rng.randint(28, 40)
    font = ImageFont.truetype(font_file, size)
    l, t, r, b = font.getbbox(text)
    asc, desc = font.getmetrics()
    # crop: the font's line box (ascent + descent) with small random margins
    mx_l, mx_r = rng.randint(2, 14), rng.randint(2, 14)
    my_t, my_b = rng.randint(1, 7), rng.randint(1, 7)
    w = (r - l) + mx_l + mx_r
    h = asc + desc + my_t + my_b
    bg = rng.randint(140, 240) if hard else rng.randint(200, 255)
    tint = [max(0, min(255, bg + rng.randint(-12, 12))) for _ in range(3)]
    fg_v = rng.randint(0, bg - 80) if hard else rng.randint(0, 70)
    fg = tuple(max(0, min(255, fg_v + rng.randint(-15, 15))) for _ in range(3))
    img = Image.new("RGB", (w, h), tuple(tint))
    d = ImageDraw.Draw(img)
    d.text((mx_l - l + rng.randint(-1, 1), my_t + rng.randint(-1, 1)), text, font=font, fill=fg)
    if hard:
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.6)))
    a = np.asarray(img).astype(np.float32)
    if hard:  # a horizontal illumination gradient
        a = a * np.linspace(1.0, rng.uniform(0.75, 1.1), a.shape[1], dtype=np.float32)[None, :, None]
    sigma = rng.uniform(4.0, 18.0) if hard else rng.uniform(1.0, 8.0)
    nrng = np.random.default_rng(rng.randrange(2**32))
    a = np.clip(a + nrng.normal(0.0, sigma, a.shape), 0, 255).astype(np.uint8)
    return Image.fromarray(a, "RGB")


def preprocess(img):
    """PP-OCR rec resize_norm_img for [3, 48, 320]; returns float32 CHW in BGR order."""
    w, h = img.size
    rw = min(W, int(math.ceil(H * w / float(h))))
    im = img.resize((rw, H), Image.BILINEAR)
    a = np.asarray(im).astype(np.float32)[:, :, ::-1]  # RGB -> BGR (PaddleOCR reads with cv2)
    a = (a / 255.0 - 0.5) / 0.5
    out = np.zeros((3, H, W), np.float32)
    out[:, :, :rw] = a.transpose(2, 0, 1)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out_dir")
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keys", default=None, help="ppocr_keys_v1.txt (default: the fetch-ocr-models.sh cache)")
    ap.add_argument("--style", choices=["clean", "hard"], default="clean",
                    help="hard: lower contrast, blur, an illumination gradient, stronger noise, up to 32 "
                         "characters (long lines get squeezed to width 320)")
    ap.add_argument("--png", type=int, default=8, help="how many rendered images to save as PNG")
    a = ap.parse_args()
    if a.n < 1:
        ap.error("--n must be >= 1")

    keys = a.keys or default_keys()
    if a.keys and not os.path.isfile(a.keys):
        print("make_lines: no such keys file: %s" % a.keys, file=sys.stderr)
        return 2
    allowed = load_charset(keys)
    fonts = [os.path.join(FONT_DIR, f) for f in FONTS if os.path.isfile(os.path.join(FONT_DIR, f))]
    if not fonts:
        print("make_lines: no DejaVu fonts in %s (apt-get install fonts-dejavu-core)" % FONT_DIR, file=sys.stderr)
        return 2
    words = load_words(allowed)
    rng = random.Random(a.seed)

    os.makedirs(a.out_dir, exist_ok=True)
    x = np.zeros((a.n, 3, H, W), np.float32)
    labels = []
    for i in range(a.n):
        text = make_text(rng, words, allowed, 32 if a.style == "hard" else 25)
        img = render(rng, text, fonts, a.style == "hard")
        x[i] = preprocess(img)
        labels.append(text)
        if i < a.png:
            img.save(os.path.join(a.out_dir, "line_%03d.png" % i))
    np.save(os.path.join(a.out_dir, "x.npy"), x)
    with open(os.path.join(a.out_dir, "labels.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(labels) + "\n")
    print("make_lines: %d lines, %d fonts, %d words%s -> %s" %
          (a.n, len(fonts), len(words), "" if allowed else " (no keys file: charset unchecked)", a.out_dir),
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
