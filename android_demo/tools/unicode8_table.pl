#!/usr/bin/perl
# Prints the code point ranges of WordPieceTokenizer.ASSIGNED_AFTER_UNICODE_8: characters that Unicode
# assigned after version 8.0 (DerivedAge) whose General_Category is one that BertNormalizer or
# BertPreTokenizer treats specially (Cc, Cf, Co: removed; Mn: stripped with accents; P*: split off).
# Hugging Face `tokenizers` classifies characters with the Unicode 8.0 tables of the Rust crate
# unicode_categories 0.1.1, so to it these code points are unassigned and stay inside words.
# Uses the Unicode data that ships with Perl (perl -MUnicode::UCD -e 'print Unicode::UCD::UnicodeVersion()').
use strict;
use warnings;
use Unicode::UCD qw(prop_invlist);

sub members {
    my %set;
    my @list = prop_invlist($_[0]);
    for (my $i = 0; $i < @list; $i += 2) {
        my $end = $i + 1 < @list ? $list[$i + 1] : 0x110000;
        $set{$_} = 1 for $list[$i] .. $end - 1;
    }
    return \%set;
}

my (%late, %special);
for my $age (qw(9.0 10.0 11.0 12.0 12.1 13.0 14.0 15.0 15.1 16.0)) {
    my @probe = eval { prop_invlist("Age=$age") };
    next unless @probe;
    %late = (%late, %{ members("Age=$age") });
}
for my $gc (qw(Cc Cf Co Mn Pc Pd Ps Pe Pi Pf Po)) {
    %special = (%special, %{ members("gc=$gc") });
}
my @cps = sort { $a <=> $b } grep { $special{$_} } keys %late;
my @ranges;
for my $cp (@cps) {
    if (@ranges && $ranges[-1][1] == $cp - 1) { $ranges[-1][1] = $cp } else { push @ranges, [$cp, $cp] }
}
printf "// Unicode %s: %d code points in %d ranges\n", Unicode::UCD::UnicodeVersion(), scalar(@cps), scalar(@ranges);
my @items = map { sprintf("0x%X, 0x%X", @$_) } @ranges;
while (my @line = splice(@items, 0, 6)) { print "    ", join(", ", @line), ",\n" }
