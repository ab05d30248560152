using SharpFuzz;
using ZeTT.Runtime;
using ZeTT.Runtime.Formats;
using ZeTT.Runtime.Hypernetwork;
using ZeTT.Runtime.IO;
using ZeTT.Runtime.Tokenizers;

namespace ZeTT.Fuzz;

/// <summary>
/// Fuzz targets for the readers of untrusted files. Each one feeds the input bytes, written to a
/// file (the readers memory-map paths), through the reader and then touches every tensor. A
/// <see cref="ZettException"/> is the documented answer to a bad file and is the one exception
/// a target lets pass; anything else (IndexOutOfRange, AccessViolation, OutOfMemory, a hang)
/// escapes and is reported by the fuzzer as a finding.
/// <code>
/// ZeTT.Fuzz safetensors              libFuzzer loop (under libfuzzer-dotnet)
/// ZeTT.Fuzz msgpack --afl            AFL loop (under afl-fuzz)
/// ZeTT.Fuzz safetensors FILE...      run saved inputs once (reproduce a finding)
/// </code>
/// </summary>
public static class Program
{
    public static int Main(string[] args)
    {
        if (args.Length == 0 || !Targets.TryGetValue(args[0], out Action<string>? target))
        {
            Console.Error.WriteLine($"usage: ZeTT.Fuzz {string.Join("|", Targets.Keys)} [--afl | FILE...]");
            return 2;
        }
        string scratch = Path.Combine(Path.GetTempPath(), $"zett-fuzz-{Environment.ProcessId}.bin");
        try
        {
            if (args.Length > 1 && args[1] == "--afl")
            {
                Fuzzer.OutOfProcess.Run(stream =>
                {
                    using (var file = File.Create(scratch))
                    {
                        stream.CopyTo(file);
                    }
                    RunOne(target, scratch);
                });
                return 0;
            }
            if (args.Length > 1)
            {
                foreach (string input in args[1..])
                {
                    Console.WriteLine($"{input}: {RunOne(target, input)}");
                }
                return 0;
            }
            Fuzzer.LibFuzzer.Run(bytes =>
            {
                File.WriteAllBytes(scratch, bytes.ToArray());
                RunOne(target, scratch);
            });
            return 0;
        }
        finally
        {
            File.Delete(scratch);
        }
    }

    private static readonly Dictionary<string, Action<string>> Targets = new(StringComparer.Ordinal)
    {
        ["safetensors"] = path =>
        {
            using SafetensorsFile file = SafetensorsFile.Open(path);
            foreach (SafetensorsTensorInfo t in file.Tensors)
            {
                if (DTypeConverter.IsConvertibleFloat(t.DType) && t.ElementCount < 1 << 20)
                {
                    file.ReadFloat32(t.Name);
                }
            }
        },
        ["msgpack"] = path => FlaxMsgpack.ReadTensors(path),
        ["json"] = path => JsonInput.ReadObject(path, InputFile.TokenizerJsonLimit,
            JsonInput.TokenizerDepth),
        ["hypernet-config"] = path => HypernetConfig.Parse(JsonInput.ReadObject(path), path),
        ["tokenizer"] = path =>
        {
            // HfTokenizer.Load takes a tokenizer.json by path; encode and decode a little text
            // so the pipeline built from the file runs too.
            HfTokenizer t = HfTokenizer.Load(path);
            TokenizerEncoding e = t.Encode("Hello, wörld! 123  \t\n日本");
            t.Decode(e.Ids);
        },
        ["model-config"] = path =>
        {
            // A model directory around the input as config.json (no weights: the config is
            // read and checked before the weights are opened).
            string dir = path + ".model";
            Directory.CreateDirectory(dir);
            try
            {
                File.Copy(path, Path.Combine(dir, "config.json"), overwrite: true);
                using HfModelDirectory m = HfModelDirectory.Open(dir);
            }
            finally
            {
                Directory.Delete(dir, recursive: true);
            }
        },
        ["token-list"] = path => InputFile.ReadAllText(path, InputFile.TokenListLimit, "token list"),
        // Evaluation and training text (zett eval --data, transfer --eval-data, train's
        // stream): the reader picks the format by extension, so the input gets one.
        ["jsonl-text"] = path => TextAs(path, ".jsonl"),
        ["parquet-text"] = path => TextAs(path, ".parquet"),
        ["id-lines"] = path => TokenizeDocuments.ReadIds(path).ToList(),
    };

    private static void TextAs(string path, string extension)
    {
        string copy = path + extension;
        File.Copy(path, copy, overwrite: true);
        try
        {
            ZeTT.Runtime.Models.EvalText.Read([copy], null);
        }
        finally
        {
            File.Delete(copy);
        }
    }

    private static string RunOne(Action<string> target, string path)
    {
        try
        {
            target(path);
            return "accepted";
        }
        catch (ZettException e)
        {
            return "rejected: " + e.Message;
        }
    }
}
