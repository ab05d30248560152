#!/usr/bin/env python3
"""Generates src/ZeTT.Runtime/Tokenizers/UnicodeTables.g.cs from the Unicode Character Database.

The Hugging Face `tokenizers` library (0.22) does not use one Unicode version:
  * NFC/NFD/NFKC/NFKD and StripAccents' `is_combining_mark` come from the crate
    unicode-normalization-alignments 0.1.12, whose tables are Unicode 9.0.0;
  * BertNormalizer (`is_other`, `is_mark_nonspacing`) and the punctuation test of
    BertPreTokenizer / Punctuation come from unicode_categories 0.1.1, Unicode 8.0.0.
Both are reproduced from a newer UCD by keeping only code points whose age (DerivedAge.txt) is
at most that version: Unicode's stability policy freezes decompositions, canonical combining
classes and composition exclusions of assigned characters, so the filtered tables are the old
ones. (General categories are not frozen; the few that changed after 8.0 are not
reproduced.)

Usage: python3 scripts/gen_unicode_tables.py [/usr/share/unicode]   (Debian package unicode-data)
"""
import os
import sys

UCD = sys.argv[1] if len(sys.argv) > 1 else "/usr/share/unicode"
OUT = os.path.join(os.path.dirname(__file__), "..", "src", "ZeTT.Runtime", "Tokenizers",
                   "UnicodeTables.g.cs")


def ranges(path, value_filter=None):
    for line in open(os.path.join(UCD, path), encoding="utf-8"):
        line = line.split("#")[0].strip()
        if not line:
            continue
        fields = [f.strip() for f in line.split(";")]
        lo, _, hi = fields[0].partition("..")
        lo = int(lo, 16)
        hi = int(hi, 16) if hi else lo
        if value_filter is None or fields[1] == value_filter:
            yield lo, hi, fields[1]


age = {}
for lo, hi, v in ranges("DerivedAge.txt"):
    major, minor = v.split(".")
    for cp in range(lo, hi + 1):
        age[cp] = (int(major), int(minor))


def assigned_by(cp, version):
    return cp in age and age[cp] <= version


# UnicodeData.txt: category, ccc, decomposition; ranges given as <..., First>/<..., Last>.
category = {}
ccc = {}
decomp = {}
first = None
for line in open(os.path.join(UCD, "UnicodeData.txt"), encoding="utf-8"):
    f = line.rstrip("\n").split(";")
    cp = int(f[0], 16)
    if f[1].endswith(", First>"):
        first = cp
        continue
    if f[1].endswith(", Last>"):
        for c in range(first, cp + 1):
            category[c] = f[2]
        continue
    category[cp] = f[2]
    if int(f[3]):
        ccc[cp] = int(f[3])
    if f[5]:
        parts = f[5].split()
        compat = parts[0].startswith("<")
        if compat:
            parts = parts[1:]
        decomp[cp] = (compat, [int(p, 16) for p in parts])

V9 = (9, 0)
V8 = (8, 0)
ccc9 = {cp: c for cp, c in ccc.items() if assigned_by(cp, V9)}
decomp9 = {cp: d for cp, d in decomp.items() if assigned_by(cp, V9)}
exclusions = {cp for lo, hi, _ in ranges("DerivedNormalizationProps.txt",
                                          "Full_Composition_Exclusion")
              for cp in range(lo, hi + 1)}


def full(cp, compat):
    d = decomp9.get(cp)
    if d is None or (d[0] and not compat):
        return [cp]
    out = []
    for c in d[1]:
        out.extend(full(c, compat))
    return out


canonical = {cp: full(cp, False) for cp, d in decomp9.items() if not d[0]}
compatibility = {cp: full(cp, True) for cp in decomp9}
compositions = sorted((d[1][0], d[1][1], cp) for cp, d in decomp9.items()
                      if not d[0] and len(d[1]) == 2 and cp not in exclusions)

CATS = ["Lu", "Ll", "Lt", "Lm", "Lo", "Mn", "Mc", "Me", "Nd", "Nl", "No", "Pc", "Pd", "Ps",
        "Pe", "Pi", "Pf", "Po", "Sm", "Sc", "Sk", "So", "Zs", "Zl", "Zp", "Cc", "Cf", "Cs",
        "Co", "Cn"]


def category_runs(version):
    runs = []
    prev = None
    for cp in range(0x110000):
        c = category.get(cp, "Cn") if assigned_by(cp, version) else "Cn"
        if c != prev:
            runs.append((cp, CATS.index(c)))
            prev = c
    return runs


def mark_runs(version):
    runs = []
    prev = None
    for cp in range(0x110000):
        m = 1 if assigned_by(cp, version) and category.get(cp, "Cn")[0] == "M" else 0
        if m != prev:
            runs.append((cp, m))
            prev = m
    return runs


def ints(values, per_line=16):
    values = list(values)
    lines = []
    for i in range(0, len(values), per_line):
        lines.append("        " + ", ".join(str(v) for v in values[i:i + per_line]) + ",")
    return "\n".join(lines)


def mapping_table(name, table):
    keys = sorted(table)
    offsets = [0]
    data = []
    for k in keys:
        data.extend(table[k])
        offsets.append(len(data))
    return (f"    internal static readonly int[] {name}Keys =\n    [\n{ints(keys)}\n    ];\n\n"
            f"    internal static readonly int[] {name}Offsets =\n    [\n{ints(offsets)}\n    ];\n\n"
            f"    internal static readonly int[] {name}Data =\n    [\n{ints(data)}\n    ];\n\n")


def script_runs():
    script = {}
    for lo, hi, v in ranges("Scripts.txt"):
        for cp in range(lo, hi + 1):
            script[cp] = v
    names = sorted(set(script.values()) | {"Unknown"})
    runs = []
    prev = None
    for cp in range(0x110000):
        v = script.get(cp, "Unknown")
        if v != prev:
            runs.append((cp, names.index(v)))
            prev = v
    return names, runs


script_names, scripts = script_runs()
cat8 = category_runs(V8)
mark9 = mark_runs(V9)
cccKeys = sorted(ccc9)
with open(OUT, "w", encoding="utf-8", newline="\n") as out:
    out.write("// <auto-generated>\n// Generated by scripts/gen_unicode_tables.py from the Unicode "
              "Character Database\n// (Debian unicode-data 15.0.0), filtered to Unicode 9.0 "
              "(normalization) and 8.0 (categories); scripts unfiltered.\n// Do not edit.\n// </auto-generated>\n\n")
    out.write("namespace ZeTT.Runtime.Tokenizers;\n\n")
    out.write("/// <summary>Unicode data as the tokenizers library sees it (see the generator)."
              "</summary>\n")
    out.write("internal static class UnicodeTables\n{\n")
    out.write(mapping_table("Canonical", canonical))
    out.write(mapping_table("Compatibility", compatibility))
    out.write(f"    internal static readonly int[] CombiningClassKeys =\n    [\n{ints(cccKeys)}\n    ];\n\n")
    out.write(f"    internal static readonly byte[] CombiningClassValues =\n    [\n"
              f"{ints(ccc9[k] for k in cccKeys)}\n    ];\n\n")
    out.write("    /// <summary>(first, second, composite) triples, sorted.</summary>\n")
    out.write(f"    internal static readonly int[] Compositions =\n    [\n"
              f"{ints((v for t in compositions for v in t), 15)}\n    ];\n\n")
    out.write("    /// <summary>Unicode 8.0 general categories: run starts and category indices "
              "(order of <c>CategoryNames</c>).</summary>\n")
    out.write(f"    internal static readonly int[] Category8Starts =\n    [\n{ints(s for s, _ in cat8)}\n    ];\n\n")
    out.write(f"    internal static readonly byte[] Category8Values =\n    [\n{ints(v for _, v in cat8)}\n    ];\n\n")
    out.write("    /// <summary>Unicode 9.0 marks (Mn, Mc, Me): run starts; runs alternate "
              "non-mark/mark starting with non-mark.</summary>\n")
    assert mark9[0] == (0, 0)
    out.write(f"    internal static readonly int[] Mark9Starts =\n    [\n{ints(s for s, _ in mark9)}\n    ];\n\n")
    out.write("    /// <summary>Scripts (Scripts.txt): run starts and indices into ScriptNames."
              "</summary>\n")
    out.write(f"    internal static readonly int[] ScriptStarts =\n    [\n{ints(s for s, _ in scripts)}\n    ];\n\n")
    out.write(f"    internal static readonly byte[] ScriptValues =\n    [\n{ints(v for _, v in scripts)}\n    ];\n\n")
    out.write("    internal static readonly string[] ScriptNames =\n    [\n        " +
              ", ".join(f'"{c}"' for c in script_names) + ",\n    ];\n\n")
    out.write("    internal static readonly string[] CategoryNames =\n    [\n        " +
              ", ".join(f'"{c}"' for c in CATS) + ",\n    ];\n")
    out.write("}\n")
print(f"canonical {len(canonical)}, compat {len(compatibility)}, ccc {len(cccKeys)}, "
      f"compositions {len(compositions)}, cat8 runs {len(cat8)}, mark9 runs {len(mark9)}")
