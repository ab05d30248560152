namespace ZeTT.Runtime;

/// <summary>
/// An error caused by the user's input (a file, a tensor, a token, an option): the message names
/// what was wrong and where. The CLI prints it as one line <c>error: &lt;message&gt;</c> and exits
/// with code 2. Internal errors (bugs) are other exception types and keep their stack traces.
/// </summary>
public class ZettException : Exception
{
    /// <summary>Creates an error with a message that names the offending input.</summary>
    public ZettException(string message) : base(message) { }

    /// <summary>Creates an error with a message and the exception that caused it.</summary>
    public ZettException(string message, Exception inner) : base(message, inner) { }

    /// <summary>Creates an error with no message; prefer the overloads that say what was wrong.</summary>
    public ZettException() { }
}
