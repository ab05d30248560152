using System.Globalization;
using ZeTT.Runtime;

namespace ZeTT.Cli;

/// <summary>A command-line mistake (unknown option, missing value): printed with the command's
/// usage, exit code 2.</summary>
internal sealed class UsageException : ZettException
{
    public UsageException(string message) : base(message) { }
}

/// <summary>
/// Parsed arguments of one command: <c>--name value</c>, <c>--name=value</c>, repeated or
/// multi-valued options (<c>--lambdas 0.3 0.5</c>), bare flags, and positionals. Each accessor
/// marks its option as used; <see cref="EnsureAllUsed"/> rejects anything left over, so a typo
/// is an error rather than silently ignored.
/// </summary>
internal sealed class CommandLine
{
    private readonly Dictionary<string, List<string>> _options = new(StringComparer.Ordinal);
    private readonly HashSet<string> _used = new(StringComparer.Ordinal);

    public CommandLine(IReadOnlyList<string> args)
    {
        for (int i = 0; i < args.Count; i++)
        {
            string a = args[i];
            if (a.StartsWith("--", StringComparison.Ordinal) && a.Length > 2)
            {
                string name = a[2..];
                var values = new List<string>();
                int eq = name.IndexOf('=', StringComparison.Ordinal);
                if (eq >= 0)
                {
                    values.Add(name[(eq + 1)..]);
                    name = name[..eq];
                }
                else
                {
                    while (i + 1 < args.Count && !IsOptionName(args[i + 1]))
                    {
                        values.Add(args[++i]);
                    }
                }
                if (!_options.TryGetValue(name, out List<string>? list))
                {
                    _options[name] = list = [];
                }
                list.AddRange(values);
                if (values.Count == 0)
                {
                    list.Add(string.Empty);
                }
            }
            else
            {
                Positionals.Add(a);
            }
        }
    }

    /// <summary>Arguments that are not options, in order.</summary>
    public List<string> Positionals { get; } = [];

    private static bool IsOptionName(string s) =>
        s.StartsWith("--", StringComparison.Ordinal) && s.Length > 2;

    public bool Has(string name)
    {
        _used.Add(name);
        return _options.ContainsKey(name);
    }

    public bool Flag(string name)
    {
        if (!Has(name))
        {
            return false;
        }
        List<string> v = _options[name];
        if (v.Count != 1 || v[0].Length != 0)
        {
            throw new UsageException($"--{name} takes no value");
        }
        return true;
    }

    public string? Optional(string name)
    {
        if (!Has(name))
        {
            return null;
        }
        List<string> v = _options[name];
        if (v.Count != 1 || v[0].Length == 0)
        {
            throw new UsageException($"--{name} takes exactly one value");
        }
        return v[0];
    }

    public string Required(string name) =>
        Optional(name) ?? throw new UsageException($"missing required option --{name}");

    public string Choice(string name, string defaultValue, params string[] allowed)
    {
        string value = Optional(name) ?? defaultValue;
        if (!allowed.Contains(value, StringComparer.Ordinal))
        {
            throw new UsageException(
                $"--{name} must be one of {string.Join(", ", allowed)}; got '{value}'");
        }
        return value;
    }

    public int Int(string name, int defaultValue, int min = int.MinValue)
    {
        string? s = Optional(name);
        if (s is null)
        {
            return defaultValue;
        }
        if (!int.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out int v) || v < min)
        {
            throw new UsageException($"--{name} needs an integer ≥ {min}; got '{s}'");
        }
        return v;
    }

    public IReadOnlyList<string> Many(string name)
    {
        if (!Has(name))
        {
            return [];
        }
        List<string> v = _options[name];
        if (v.Count == 0 || v.Any(x => x.Length == 0))
        {
            throw new UsageException($"--{name} needs at least one value");
        }
        return v;
    }

    public IReadOnlyList<double> Doubles(string name) =>
        Many(name).Select(s => double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture,
            out double d) ? d : throw new UsageException($"--{name}: '{s}' is not a number"))
        .ToList();

    public void EnsureAllUsed(int maxPositionals = 0)
    {
        foreach (string name in _options.Keys)
        {
            if (!_used.Contains(name))
            {
                throw new UsageException($"unknown option --{name}");
            }
        }
        if (Positionals.Count > maxPositionals)
        {
            throw new UsageException($"unexpected argument '{Positionals[maxPositionals]}'");
        }
    }
}
