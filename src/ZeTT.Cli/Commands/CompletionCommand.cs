using System.CommandLine;

namespace ZeTT.Cli;

/// <summary><c>zett completion bash|zsh</c>: a shell script that completes zett's commands,
/// options and option values by asking zett itself (System.CommandLine's <c>[suggest]</c>
/// directive answers from the same declarations that parse).</summary>
internal sealed class CompletionCommand : ZettCommand
{
    private readonly Argument<string> _shell = new("SHELL")
    {
        Description = "bash or zsh; e.g. source <(zett completion bash) in ~/.bashrc",
    };

    public CompletionCommand() : base("completion", "print a tab-completion script for bash or zsh")
    {
        _shell.CompletionSources.Add("bash", "zsh");
        _shell.Validators.Add(result =>
        {
            if (result.GetValueOrDefault<string>() is not ("bash" or "zsh") and var s)
            {
                result.AddError($"completion: SHELL must be bash or zsh; got '{s}'");
            }
        });
        Arguments.Add(_shell);
    }

    /// <summary>The bash function: the line up to the cursor, its first word (however zett was
    /// invoked: ./zett, a path) read as <c>zett</c>, goes to <c>zett [suggest:N]</c>, which
    /// answers one candidate per line. zsh runs it through bashcompinit.</summary>
    private const string Bash = """
        _zett_complete() {
            local IFS=$'\n' line="${COMP_LINE:0:COMP_POINT}"
            line="zett${line#"${COMP_WORDS[0]}"}"
            COMPREPLY=($("${COMP_WORDS[0]}" "[suggest:${#line}]" "$line" 2>/dev/null))
        }
        complete -o default -F _zett_complete zett ./zett
        """;

    protected override int Run(ParseResult parse, CliConsole console)
    {
        if (parse.GetRequiredValue(_shell) == "zsh")
        {
            console.Out.WriteLine("autoload -U +X bashcompinit && bashcompinit");
        }
        console.Out.WriteLine(Bash);
        return 0;
    }
}
