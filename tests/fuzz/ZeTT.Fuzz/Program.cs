using SharpFuzz;
using ZeTT.Runtime;
using ZeTT.Runtime.Formats;

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
    };

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
