// GitHub-markdown building blocks shared by the bench and profile reports.

/** Escapes a table cell: pipes, backslashes and newlines. */
export function markdownCell(text: string): string {
  return text.replace(/\\/g, '\\\\').replace(/\|/g, '\\|').replace(/\r?\n/g, ' ');
}

/** A GitHub table; `right(i, header)` says which columns align right (numbers). */
export function markdownTable(
  headers: readonly string[],
  rows: readonly (readonly string[])[],
  right: (index: number, header: string) => boolean,
): string[] {
  return [
    `| ${headers.map(markdownCell).join(' | ')} |`,
    `|${headers.map((h, i) => (right(i, h) ? '---:' : '---')).join('|')}|`,
    ...rows.map((r) => `| ${r.map(markdownCell).join(' | ')} |`),
  ];
}

/** The alt text of a chart image: its file name without extension, words spaced. */
export function imageAlt(file: string): string {
  const base = file.split('/').pop() ?? file;
  return base.replace(/\.svg$/i, '').replace(/[-_]+/g, ' ').replace(/[[\]]/g, '');
}
